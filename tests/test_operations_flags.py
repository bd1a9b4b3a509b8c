"""Config flags: typed values, and a change made in one process seen by another within a
second (pub/sub), not after the 5-minute cache."""

import subprocess
import sys
import time

import pytest
from django.core.exceptions import ValidationError

from operations.models import ConfigFlag
from operations.services.flags import flag

# Another process: reads the flag in a loop (through its 5-minute L1 cache) and prints
# each new value with the time it saw it.
WATCHER = """
import sys, time
import django
django.setup()
from llmops import changes
from operations.services.flags import flag
flag("eval-judge-enabled")
changes.listening.wait(10)
print("ready", flush=True)
seen = None
deadline = time.time() + 30
while time.time() < deadline:
    value = flag("eval-judge-enabled")
    if value != seen:
        seen = value
        print(repr(value), time.time(), flush=True)
        if value is False:
            break
    time.sleep(0.01)
"""


@pytest.mark.django_db(transaction=True)
def test_a_flag_changed_in_one_process_is_seen_by_another_within_a_second(settings,
                                                                         subprocess_env):
    assert settings.CONFIG_CACHE_TTL_S == 300
    record = ConfigFlag.objects.create(key="eval-judge-enabled", type="bool", value="true",
                                       description="Run LLM-judge evaluators")
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER], cwd=settings.BASE_DIR, text=True,
        env=subprocess_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert watcher.stdout.readline().strip() == "ready", watcher.stderr.read()
        assert watcher.stdout.readline().split()[0] == "True"
        record.value = "false"
        record.save()
        changed_at = time.time()
        line = watcher.stdout.readline().split()
        assert line and line[0] == "False", watcher.stderr.read()
        assert float(line[1]) - changed_at < 1.0
    finally:
        watcher.kill()
        watcher.wait()
        ConfigFlag.objects.all().delete()


@pytest.mark.django_db
def test_flags_are_typed_and_validated():
    ConfigFlag.objects.create(key="batch", type="int", value="250")
    ConfigFlag.objects.create(key="ratio", type="float", value="0.25")
    ConfigFlag.objects.create(key="label", type="str", value="blue")
    assert (flag("batch"), flag("ratio"), flag("label"), flag("missing", 7)) == (
        250, 0.25, "blue", 7)
    with pytest.raises(ValidationError, match="not a valid integer"):
        ConfigFlag(key="bad", type="int", value="many").full_clean()
    with pytest.raises(ValidationError, match="true or false"):
        ConfigFlag(key="bad2", type="bool", value="perhaps").full_clean()
