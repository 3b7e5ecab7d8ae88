from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.services.demo import demo_setup


class Command(BaseCommand):
    help = "Creates the demo project and the demo users once, and prints their credentials."

    def handle(self, *args: object, **options: object) -> None:
        info = demo_setup(data_dir=settings.DATA_DIR)
        verb = "created" if info.created else "already exists"
        self.stdout.write(f"Demo project {info.project_id} {verb}.")
        for username, password in info.credentials.items():
            self.stdout.write(f"  {username} / {password}")
