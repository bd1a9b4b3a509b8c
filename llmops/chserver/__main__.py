"""Command line: python -m llmops.chserver [--data-dir ...] (each flag also from CHSERVER_*)."""

import argparse
import logging
import os
import sys
from pathlib import Path

from llmops.chserver.httpd import serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m llmops.chserver",
        description="Own a chDB data directory and serve the ClickHouse HTTP interface.",
    )
    parser.add_argument("--data-dir", type=Path,
                        default=Path(env("CHSERVER_DATA_DIR", "var/clickhouse/data")))
    parser.add_argument("--backups-dir", type=Path,
                        default=Path(env("CHSERVER_BACKUPS_DIR", "var/clickhouse/backups")))
    parser.add_argument("--credentials-file", type=Path,
                        default=env("CHSERVER_CREDENTIALS_FILE"),
                        help="the password of user `default`, generated (mode 0600) if "
                             "missing; default: credentials next to the data directory")
    parser.add_argument("--host", default=env("CHSERVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("CHSERVER_PORT", "8123")))
    parser.add_argument("--pool-size", type=int, default=int(env("CHSERVER_POOL_SIZE", "4")))
    parser.add_argument("--log-level", default=env("CHSERVER_LOG_LEVEL", "INFO"),
                        help="DEBUG logs one line per request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    credentials = args.credentials_file or args.data_dir.parent / "credentials"
    return serve(args.data_dir, args.backups_dir, args.host, args.port, args.pool_size,
                 Path(credentials))


if __name__ == "__main__":
    sys.exit(main())
