"""Process cache of validated client profiles keyed by (id, updated_at), so candidate ranking skips re-validation."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from features.records import ClientProfile
from service.storage import repositories as repo

_MAX_ANSWERS = 32


class ProfileCache:
    """LRU of validated profiles; an entry is used only while the stored ``updated_at`` is unchanged.

    Args:
        max_items: profiles kept at most (size it to the consenting clients of the store: a pool larger than the
            cache is re-read and re-validated on every request).
    """

    def __init__(self, max_items: int = 200_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[datetime, ClientProfile]] = OrderedDict()
        self._lock = threading.Lock()
        # The last answers by identity of the versions list: the repository hands back the same list object
        # while a centre's clients are unchanged, so a repeated pool costs one lookup (and keeps its identity,
        # which the candidate pool cache keys on).
        self._answers: OrderedDict[int, tuple[Sequence[tuple[str, datetime]], list[ClientProfile]]] = OrderedDict()

    def resolve(self, session: Session, versions: Sequence[tuple[str, datetime]]) -> list[ClientProfile]:
        """Profiles for ``(id, updated_at)`` pairs, in the given order (fetching only stale or missing ones)."""
        with self._lock:
            answer = self._answers.get(id(versions))
            if answer is not None and answer[0] is versions:
                return answer[1]
        result = self._resolve(session, versions)
        with self._lock:
            self._answers[id(versions)] = (versions, result)  # holding ``versions`` keeps its id unique
            while len(self._answers) > _MAX_ANSWERS:
                self._answers.popitem(last=False)
        return result

    def _resolve(self, session: Session, versions: Sequence[tuple[str, datetime]]) -> list[ClientProfile]:
        found: dict[str, ClientProfile] = {}
        missing: list[str] = []
        with self._lock:
            for cid, updated in versions:
                hit = self._items.get(cid)
                if hit is not None and hit[0] == updated:
                    found[cid] = hit[1]
                    self._items.move_to_end(cid)
                else:
                    missing.append(cid)
        if missing:
            fetched = repo.client_profiles(session, missing)
            with self._lock:
                for cid, (updated, profile) in fetched.items():
                    found[cid] = profile
                    self._items[cid] = (updated, profile)
                    self._items.move_to_end(cid)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return [found[cid] for cid, _ in versions if cid in found]

    def forget(self, client_id: str) -> None:
        """Drop one client (on erasure)."""
        with self._lock:
            self._items.pop(client_id, None)
            self._answers.clear()
