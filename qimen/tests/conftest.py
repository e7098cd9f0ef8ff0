import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from qimen.sandbox import SandboxGateway

SECRET = "s3cr3t-不要泄露-value"
APP_KEY = "12345678"


@pytest.fixture
def sandbox():
    with SandboxGateway({APP_KEY: SECRET}, timeout_delay=5) as gateway:
        yield gateway
