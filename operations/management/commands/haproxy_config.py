"""Write HAProxy's configuration for API_INSTANCES gunicorn instances (settings)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from operations.services.loadbalancer import haproxy_config, instance_ports


class Command(BaseCommand):
    help = "Print (or --write) HAProxy's config for API_INSTANCES API processes on API_PORT."

    def add_arguments(self, parser):
        parser.add_argument("--write", metavar="PATH", help="write the config there")

    def handle(self, *args, write=None, **options):
        ports = instance_ports()
        config = haproxy_config(listen_port=settings.API_PORT, server_ports=ports,
                                stats_port=settings.HAPROXY_STATS_PORT)
        if not write:
            self.stdout.write(config, ending="")
            return
        Path(write).write_text(config)
        # scripts/processes.py starts a gunicorn on each of these ports.
        self.stdout.write(f"instance ports: {' '.join(map(str, ports))}")
