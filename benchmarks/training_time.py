"""placeholder"""

from typing import Any


def run(section: Any, fx: Any) -> None:
    raise NotImplementedError
