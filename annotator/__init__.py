"""The annotation app: projects, documents, labels, annotations, the selection queue and training jobs."""
