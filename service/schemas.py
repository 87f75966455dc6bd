"""API request and response models (pydantic v2) with OpenAPI examples; domain records are embedded as is."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from features.events import DecisionEvent, OutcomeEvent
from features.records import (
    KINDS,
    AuditAttributes,
    ClientId,
    ClientProfile,
    IsoDate,
    Kind,
    Opportunity,
    OpportunityId,
    SupportLevel,
)
from service.schema_base import ApiModel as _Api
from service.schema_base import Lang
from service.schemas_coding import CodingResponse, CodingText

MAX_K = 50

_EXAMPLE_CLIENT: dict[str, Any] = {
    "client_id": "c-0001",
    "centre": "helsinki",
    "age": 34,
    "skills": [{"uri": "http://data.europa.eu/esco/skill/0ff99f51-40d9-42f1-a1ec-377b2bb5e15f", "level": 2}],
    "languages": [{"language": "fi", "level": "A2.1", "source": "teacher"}],
    "constraints": {"municipality": "091", "max_travel_km": 25},
    "consent": {"matching": True, "share_with_coordinators": True, "model_training": False},
}


def _json_arrays_to_tuples(value: Any) -> Any:
    """JSON has no tuples; FastAPI validates parsed JSON in python mode, where strict records refuse lists."""
    if isinstance(value, dict) and isinstance(value.get("rules"), dict):
        rules = value["rules"]
        if isinstance(rules.get("client_types"), list):
            value = {**value, "rules": {**rules, "client_types": tuple(rules["client_types"])}}
    return value


class OpportunityPut(Opportunity):
    """An opportunity with explicit codes, or (``coding`` with ``confirm: false``) a draft to propose codes for.

    With ``coding`` the answer proposes ``occupation`` and ``required_skills`` and nothing is stored; the
    coordinator confirms them and PUTs the record with the explicit codes.
    """

    confirm: bool | None = Field(default=None, description="false: only propose codes, store nothing.")
    coding: CodingText | None = Field(default=None, description="Text to propose codes from (needs confirm: false).")

    def record(self) -> Opportunity:
        """The stored record (without ``confirm`` and ``coding``)."""
        return Opportunity.model_validate(self.model_dump(exclude={"confirm", "coding"}), strict=False)


OpportunityIn = Annotated[OpportunityPut, BeforeValidator(_json_arrays_to_tuples)]


# ------------------------------------------------------------------------------------------------ common
class _ServedRanking(_Api):
    """What every ranking response says about how it was served (stored as impressions)."""

    impression_id: str = Field(
        description="Id of this served ranking; name it in feedback (`impression_id`) on what was shown."
    )
    policy: str = Field(
        description="Serving policy: `deterministic` (best by score) or `plackett-luce(...)` (exploration)."
    )
    explored: bool = Field(description="True when exploration reordered places 4 and below (see the model card).")


class ModelInfo(_Api):
    """Which model answered: registry name, version and alias, and whether it is the points fallback."""

    name: str
    version: str | None = None
    alias: str | None = None
    fallback: bool = False

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "polku-ranker", "version": "3", "alias": "champion", "fallback": False}]
        },
    )


class ErrorItem(_Api):
    """One problem: the field (dotted location) and the reason; submitted values are never echoed."""

    field: str | None = None
    reason: str


class ErrorResponse(_Api):
    """Error envelope of every 4xx/5xx answer."""

    errors: list[ErrorItem]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"errors": [{"field": "body.client.skills.0.uri", "reason": "Value error, unknown ESCO skill"}]}
            ]
        },
    )


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "Body is not valid JSON"},
    401: {"model": ErrorResponse, "description": "Missing or invalid token"},
    403: {"model": ErrorResponse, "description": "Role or centre not allowed"},
    413: {"model": ErrorResponse, "description": "Body too large"},
    422: {"model": ErrorResponse, "description": "Invalid input (field and reason, no values echoed)"},
    503: {"model": ErrorResponse, "description": "Database unreachable; retry after the given seconds"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorResponse, "description": "Unknown id"}}


# ------------------------------------------------------------------------------------------- suggestions
class SuggestionsRequest(_Api):
    """Ask for suggestions for an inline profile or a stored client (exactly one of the two)."""

    client: ClientProfile | None = None
    client_id: ClientId | None = None
    kinds: list[Kind] = Field(default_factory=lambda: list(KINDS), min_length=1, max_length=len(KINDS))
    k: int = Field(default=5, ge=1, le=MAX_K, description="Items per kind.")
    lang: Lang = "fi"
    include_paths: bool = False
    explain: list[OpportunityId] = Field(
        default_factory=list, max_length=20, description="Items whose eligibility you want explained."
    )
    reference_date: IsoDate | None = Field(default=None, description="Day to plan from (default: today).")
    congestion_aware: bool = Field(
        default=True,
        description="Subtract the centre's congestion prices (polku allocate) from scores before sorting.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"client_id": "c-0001", "kinds": ["training", "vacancy"], "k": 5, "lang": "en", "include_paths": True},
                {"client": _EXAMPLE_CLIENT, "k": 3, "lang": "fi"},
            ]
        },
    )

    @model_validator(mode="after")
    def _one_client(self) -> SuggestionsRequest:
        if (self.client is None) == (self.client_id is None):
            raise ValueError("give exactly one of client (inline profile) or client_id (stored client)")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("kinds: each kind may appear once")
        return self


class Remedy(_Api):
    """A catalogue training that closes a gap."""

    opportunity_id: str
    title: str
    next_start: date | None = None
    weeks: float | None = None


class Gap(_Api):
    """Something the client lacks for an item (skill, language level, literacy, digital, education)."""

    type: str
    code: str | None = None
    label: str
    have: str | None = None
    need: str | None = None
    text: str
    remedies: list[Remedy] = Field(default_factory=list)


class Reason(_Api):
    """A strongest contribution to the score, in words."""

    feature: str
    text: str
    weight: float


class SuggestionItem(_Api):
    """One suggested opportunity."""

    opportunity_id: str
    kind: Kind
    title: str
    provider: str
    municipality: str
    rank: int
    score: float = Field(description="Ranking score: expected value if taken up (see p_accept, expected_outcome).")
    p_accept: float | None = Field(
        default=None,
        description="Estimated chance the client takes this up when it is suggested first (null: points fallback).",
    )
    expected_outcome: float | None = Field(
        default=None,
        description=(
            "Expected value if taken up: P(start) + P(start and complete) + employment above the route's base "
            "rate, each weighted as configured at training (null: points fallback)."
        ),
    )
    reasons: list[Reason]
    gaps: list[Gap]
    next_start: date | None = None
    needs_te_decision: bool
    seats_left: int
    congestion_price: float | None = Field(
        default=None, description="Price subtracted from the score before sorting (null: no price run applied)."
    )


class KindSuggestions(_Api):
    """Top items of one kind."""

    kind: Kind
    count: int
    eligible: int
    items: list[SuggestionItem]


class NamedItemStatus(_Api):
    """Eligibility of an item the caller asked about."""

    opportunity_id: str
    status: Literal["eligible", "excluded", "unknown"]
    reason: str | None = None
    text: str | None = None


class ExclusionSummary(_Api):
    """Items left out before ranking, by reason."""

    total: int
    by_reason: dict[str, int]
    named: list[NamedItemStatus] = Field(default_factory=list)


class PathStep(_Api):
    """One step of a path: an opportunity, when it can start and what it gives."""

    opportunity_id: str
    kind: Kind
    title: str
    start: date | None = None
    weeks: float
    gives: list[str] = Field(default_factory=list)


class PathOut(_Api):
    """A multi-step path towards a goal occupation."""

    goal: str
    goal_label: str | None = None
    steps: list[PathStep]
    score: float
    weeks_to_goal: float


class PriceRunInfo(_Api):
    """A ``polku allocate`` run whose congestion prices ordered the suggestions."""

    run_id: str
    reference_date: date
    created_at: datetime
    solver: str
    model_version: str | None = None


class SuggestionsResponse(_ServedRanking):
    """Suggestions per kind, exclusions and paths, with the model that served them."""

    client_id: str
    reference_date: date
    model: ModelInfo
    suggestions: list[KindSuggestions]
    excluded: ExclusionSummary
    paths: list[PathOut] = Field(default_factory=list)
    price_run: PriceRunInfo | None = Field(
        default=None, description="The congestion price run applied (null: none for the centre, or switched off)."
    )


# -------------------------------------------------------------------------------------------- candidates
class CandidatesRequest(_Api):
    """Rank the consenting clients of the caller's centre for one opportunity."""

    k: int = Field(default=20, ge=1, le=200)
    reference_date: IsoDate | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"k": 10}]})


class Candidate(_Api):
    """A consenting client, pseudonymous, with readiness and support needs (never audit attributes)."""

    client_id: str
    rank: int
    score: float
    readiness: Literal["ready", "ready_with_support", "needs_preparation"]
    language_support: bool
    coaching_need: SupportLevel
    gaps: list[str] = Field(default_factory=list)


class CandidatesResponse(_ServedRanking):
    """Ranked candidates for one opportunity."""

    opportunity_id: str
    model: ModelInfo
    considered: int
    excluded_by_reason: dict[str, int]
    count: int
    data: list[Candidate]


# ----------------------------------------------------------------------------------------------- clients
class ClientPutRequest(_Api):
    """A client's profile (with consents) and, optionally, audit-only attributes (never returned)."""

    profile: ClientProfile
    audit: AuditAttributes | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"profile": _EXAMPLE_CLIENT}]})


class ClientResponse(_Api):
    """A stored client's profile and consents."""

    profile: ClientProfile
    created: bool = False
    updated_at: datetime | None = None


class DeletedResponse(_Api):
    """What a DELETE removed."""

    id: str
    deleted: bool = True
    feedback_unlinked: int = 0


class AccessLogEntry(_Api):
    """One use of the client's data: who (staff pseudonym, role, centre), when, and for what purpose."""

    at: datetime
    actor: str = Field(description="The staff member's pseudonym (the token's `sub`).")
    role: str
    centre: str | None = None
    purpose: str = Field(description="Purpose code, e.g. `suggestions`, `candidates`, `client_read`.")
    description: str = Field(description="The purpose in words (English).")


class AccessLogResponse(_Api):
    """A page of a client's access log, newest first (GDPR Art. 15: who processed the data, when, why)."""

    client_id: str
    count: int
    total: int
    data: list[AccessLogEntry]


# ----------------------------------------------------------------------------------------- opportunities
class OpportunityResponse(_Api):
    """A stored opportunity."""

    opportunity: Opportunity
    created: bool = False


class OpportunityProposal(_Api):
    """Codes proposed for a draft opportunity: ``opportunity`` holds them; nothing was stored."""

    stored: Literal[False] = False
    opportunity: Opportunity
    coding: CodingResponse


class OpportunityList(_Api):
    """A page of opportunities."""

    data: list[Opportunity]
    count: int
    total: int


# ---------------------------------------------------------------------------------------------- feedback
FeedbackRequest = Annotated[DecisionEvent | OutcomeEvent, Field(discriminator="type")]


class FeedbackResponse(_Api):
    """Stored feedback (a replay of the same event answers the same)."""

    event_id: str
    status: Literal["created", "duplicate"]
    received_at: datetime


# ------------------------------------------------------------------------------------------ model/health
class ModelResponse(_Api):
    """The model in service."""

    model: ModelInfo
    source: Literal["registry", "cache", "fallback"]
    degraded: bool
    loaded_at: datetime
    feature_count: int
    catalogue_size: int
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class HealthResponse(_Api):
    """Liveness."""

    status: Literal["ok"]


class IdentityProviderInfo(_Api):
    """The identity provider's signing keys as this process holds them (present when OIDC is configured)."""

    status: Literal["ok", "unreachable", "not_loaded"] = Field(
        description="ok: last key-set fetch succeeded; unreachable: it failed (cached keys keep working); "
        "not_loaded: no keys yet."
    )
    keys: int = Field(description="Signing keys cached.")
    fetched_at: datetime | None = Field(default=None, description="Last successful fetch.")


class ReadyResponse(_Api):
    """Readiness: model loaded, database reachable and, with OIDC, the identity provider's keys at hand."""

    status: Literal["ok", "degraded", "unavailable"]
    database: bool
    model: ModelInfo | None = None
    identity_provider: IdentityProviderInfo | None = None
    reason: str | None = None
