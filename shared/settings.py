"""Every setting of stancestream, read once from the environment (and an optional ``.env``) and frozen.

Two variables keep their conventional names because deployments already set them: ``KAFKA_BOOTSTRAP`` and
``CLICKHOUSE_URL``. Everything else is ``STANCESTREAM_<FIELD>``. ``stancestream settings`` prints the table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import StancestreamError


#: The adapter trained by us and shipped in the repository (see adapters/default/README.md).
SHIPPED_ADAPTER = Path(__file__).resolve().parents[1] / "adapters" / "default"


class Quantization(str, Enum):
    auto = "auto"  # nf4 on CUDA, none on CPU (see docs/benchmarks.md for the CPU numbers)
    nf4 = "nf4"
    none = "none"


class Dtype(str, Enum):
    auto = "auto"  # bf16 (AMX/AVX-512-bf16 CPUs and CUDA), else fp32
    bf16 = "bf16"
    fp32 = "fp32"


class BrokerStorage(str, Enum):
    memory = "memory"  # fastest; gone when `run` ends
    durable = "durable"  # on disk under data_dir/broker; survives kill -9


class Scoring(str, Enum):
    """How the classifier reads the four probabilities off the causal LM (shared/classifier/scoring.py)."""

    label_words = "label-words"  # our short prompt, the next-token scores of " pro", " anti", " neutral", " unrelated"
    prompt = "prompt"  # the paper's instruction prompt, the next-token scores of the category numbers 1-4


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STANCESTREAM_", env_file=".env", extra="ignore", frozen=True)

    # --- infrastructure -------------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "STANCESTREAM_KAFKA_BOOTSTRAP"),
        description="Kafka bootstrap servers; unset: `run` starts an embedded Tansu broker on loopback",
    )
    clickhouse_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("CLICKHOUSE_URL", "STANCESTREAM_CLICKHOUSE_URL"),
        description="ClickHouse server, e.g. http://user:pass@host:8123/db; unset: embedded chDB under data_dir",
    )
    clickhouse_cluster: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse cluster (a `remote_servers` name of the server at CLICKHOUSE_URL) to create the "
                    "schema on: replicated tables and Distributed tables under the usual names, all ON CLUSTER; "
                    "unset: one server",
    )
    broker_storage: BrokerStorage = Field(
        BrokerStorage.memory,
        description="the embedded broker keeps messages in `memory` (lost when `run` ends) or `durable` "
                    "(on disk under data_dir/broker: survives kill -9, ~7x slower produce, memory flat; batches every "
                    "consumer group has committed past are deleted)",
    )
    data_dir: Path = Field(Path("var"), description="embedded ClickHouse data and run state")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "stancestream", description="converted base models (safetensors)"
    )

    # --- topics ---------------------------------------------------------------------------------------------
    topic_prefix: str = Field("", description="prefix of every physical topic name, e.g. `prod.`")
    partitions: int = Field(4, ge=1, description="partitions of topics created at start-up")
    replication_factor: int = Field(1, ge=1, description="replication of topics created at start-up")
    worker_group: str = Field("stancestream-worker", description="consumer group (Faust app id) of the workers")

    # --- batching -------------------------------------------------------------------------------------------
    batch_size: int = Field(32, ge=1, description="most tweets per model call until the model's rate is measured, "
                                                  "and the fewest `batch_target_s` may cap a call at")
    max_batch_size: int = Field(
        128, ge=1, description="most tweets per model call: tweets queued while the model was busy go together, up "
                               "to this (and up to `batch_target_s` of model time)")
    batch_target_s: float = Field(
        3.0, gt=0, description="seconds of model time a merged batch may take at the model's measured rate: near "
                               "capacity, results flow steadily instead of in bursts of large batches")
    batch_fill_size: int = Field(
        64, ge=1, description="near capacity, tweets a model call waits for (up to `batch_fill_s`): small calls cost "
                              "more per tweet")
    batch_fill_s: float = Field(
        0.5, ge=0, description="near capacity (tweets arriving at ≥ `batch_fill_load` of the model's rate on full "
                               "calls), longest a model call waits for `batch_fill_size` tweets to queue; under "
                               "lighter load it never waits (0: off)")
    batch_fill_load: float = Field(
        0.6, gt=0, le=1, description="the load at which calls start to wait to fill: tweets arriving at this "
                                     "fraction of the model's rate on full calls (over the last 5 s) or more")
    batch_fill_gain: float = Field(
        0.0, ge=0, description="calls wait to fill only where full calls run at least this many times the rate of "
                               "the smaller calls made near capacity (0: wherever near capacity; 1.1 cuts latency "
                               "below capacity on a CPU whose call cost per tweet is flat, at some capacity)")
    in_flight_batches: int = Field(
        2, ge=1, description="classified batches that may wait for their ClickHouse write while the model goes on")
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=1500, description="longest a broker fetch waits for data (Faust's 1500 ms is a 0.6 s latency "
                                        "floor on Tansu)")
    cache_entries: int = Field(
        50_000, ge=0, description="identical tweets classified once: texts whose probabilities are kept (0: off)")
    sink_retries: int = Field(5, ge=0, description="ClickHouse write retries before `worker` stops (`run` retries forever)")
    dlq_max_invalid_ratio: float = Field(
        0.5, gt=0, le=1, description="stop the worker if more than this share of the last 1000 messages is invalid"
    )

    # --- input limits ---------------------------------------------------------------------------------------
    # A message breaking one of these is dead-lettered with the reason; none of them can stop the worker.
    max_message_bytes: int = Field(
        262_144, ge=1024, le=900_000,
        description="largest message accepted (bytes); larger feed lines are dead-lettered by the feeder "
                    "(Kafka's default produce limit is 1,000,000 bytes)",
    )
    max_text_chars: int = Field(10_000, ge=1, le=10_000, description="longest tweet or label text (characters)")
    max_json_depth: int = Field(32, ge=2, le=1000, description="deepest JSON nesting accepted (a tweet needs 1)")
    created_at_min: datetime = Field(
        datetime(2006, 3, 21, tzinfo=timezone.utc),
        description="earliest accepted created_at / labeled_at (Twitter's first tweet); must be after 1970",
    )
    created_at_max_ahead_s: float = Field(
        86_400, ge=0, description="latest accepted created_at: this many seconds after now (clock skew)"
    )

    @field_validator("created_at_min")
    @classmethod
    def _in_clickhouse_range(cls, value: datetime) -> datetime:
        # toStartOfHour() turns DateTime64 into DateTime, whose range is 1970..2106: outside it, rows land in
        # wrong (clamped) hourly buckets.
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        if not datetime(1970, 1, 1, tzinfo=timezone.utc) <= value <= datetime(2100, 1, 1, tzinfo=timezone.utc):
            raise ValueError("created_at_min must lie between 1970 and 2100 (ClickHouse DateTime range)")
        return value

    # --- model ----------------------------------------------------------------------------------------------
    base_model: str = Field(
        "gemma-3-270m", description="`gemma-3-270m` (packaged), a local HF directory, a .gguf file or a cached HF id"
    )
    scoring: Scoring = Field(
        Scoring.label_words,
        description="`label-words` (our short prompt and the label words' scores: the shipped adapters) or `prompt` "
                    "(the paper's instruction prompt and the scores of the category numbers 1-4: the paper's own "
                    "fine-tuned GGUF, any instruction model); an adapter is served only in the mode it was trained in",
    )
    adapter: Path | None = Field(
        # The shipped adapter was trained on the label words: in the prompt mode the default is the base model alone.
        default_factory=lambda data: SHIPPED_ADAPTER if (
            (SHIPPED_ADAPTER / "adapter_config.json").exists() and data.get("scoring") is not Scoring.prompt
        ) else None,
        description="LoRA adapter directory; default: the shipped adapters/default (none with STANCESTREAM_SCORING="
                    "prompt); `none`: the base model alone",
    )
    quantization: Quantization = Field(Quantization.auto, description="nf4 (bitsandbytes) or none")
    dtype: Dtype = Field(Dtype.auto, description="compute precision of the unquantized layers")
    device: Device = Field(Device.auto, description="cpu or cuda")
    max_tokens: int = Field(128, ge=16, description="tweets are truncated to this many tokens")
    pass_tokens: int = Field(
        2048, ge=1, description="tokens per forward pass when classifying: tweets are packed end to end into rows, "
                                  "so tweets of mixed lengths cost their own tokens, not padding")
    infer_batch_size: int = Field(16, ge=1, description="tweets per forward pass when training scores its dev split "
                                                       "(packed) and caches the frozen layers (length-sorted, padded)")
    merge_adapter: bool = Field(
        True, description="fold the served LoRA adapter into the base weights (faster; unmerged on hot-swap)"
    )
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads; unset: torch's default")

    # --- trainer and adapter registry ---------------------------------------------------------------------------
    registry_dir: Path | None = Field(None, description="versioned adapter directories; unset: <data_dir>/adapters")
    trainer_interval_s: float = Field(3600, gt=0, description="seconds between trainer cycles (unless a cron is set)")
    trainer_cron: str | None = Field(None, description="cron expression for trainer cycles, e.g. `0 3 * * *`")
    shares_interval_s: float = Field(
        300, gt=0, description="seconds between the trainer service's refreshes of the label_shares table")
    # The names of shared.quantification.estimators' corrected estimators; a test keeps the two lists equal.
    share_estimator: Literal["acc", "pacc", "sld", "pacc-s", "cpcc", "sld-bcts"] = Field(
        "cpcc", description="corrected estimator of label shares (label_shares, shares, monitor): cpcc is closest "
                            "on natural mixes; sld-bcts or pacc follow large shifts of the mix better "
                            "(docs/quantification.md)")
    # The drift alarm (shared/quantification/drift.py): the live stream of the last window against a reference.
    drift_interval_s: float = Field(
        300, gt=0, description="seconds between the trainer service's drift checks (the drift table)")
    drift_window_s: int = Field(
        3600, ge=60, description="the drift check's current window: live tweets classified in the last this many "
                                 "seconds")
    drift_reference_hours: float = Field(
        24, gt=0, description="the drift check's reference: the first this many hours of live tweets classified by "
                              "the active adapter after its promotion")
    drift_reference: str | None = Field(
        None, description="a pinned drift reference instead, START/END in ISO 8601 (UTC unless an offset is given), "
                          "e.g. `2026-11-01T00:00Z/2026-11-02T00:00Z`")
    drift_min_tweets: int = Field(
        50, ge=1, description="a language is judged for drift only with at least this many tweets in the window "
                              "and in the reference")
    drift_max_psi: float = Field(
        0.25, gt=0, description="drift alarm when a language's label mix moves by a population stability index "
                                "above this (0.25: a significant shift)")
    drift_max_js: float = Field(
        0.2, gt=0, le=1, description="drift alarm when a language's confidence distribution moves by a "
                                     "Jensen-Shannon distance (base 2) above this")
    low_confidence: float = Field(
        0.5, gt=0.25, le=1, description="a tweet whose highest probability is below this is low-confidence")
    drift_max_low_confidence_rise: float = Field(
        0.1, gt=0, le=1, description="drift alarm when a language's share of low-confidence tweets rises by more "
                                     "than this from the reference to the window")
    drift_max_unseen_share: float = Field(
        0.2, gt=0, le=1, description="drift alarm when more than this share of the window's tweets are in "
                                     "languages the active adapter was not trained on")
    trainer_min_new_labels: int = Field(
        100, ge=0, description="a cycle trains only if at least this many labels arrived since the last one"
    )
    trainer_embedded: bool = Field(True, description="`stancestream run` also runs the trainer on its schedule")
    holdout_fraction: float = Field(
        0.15, gt=0, lt=1, description="share of labels frozen, on first use, into the gate's holdout"
    )
    gate_max_f1_drop: float = Field(
        0.01, ge=0, description="reject a candidate whose holdout macro-F1 is lower than the active's by more"
    )
    gate_max_lang_drop: float = Field(
        0.05, ge=0, description="reject a candidate if a language's holdout accuracy drops by more than this"
    )
    gate_min_lang_n: int = Field(20, ge=1, description="languages with fewer holdout tweets are not gated")

    # --- observability -----------------------------------------------------------------------------------------
    metrics_port: int | None = Field(
        9464, ge=0, description="Prometheus endpoint of the worker and trainer; 0: any free port; `off`: none"
    )
    metrics_host: str = Field("127.0.0.1", description="the Prometheus endpoint binds here (loopback by default)")

    # --- web ------------------------------------------------------------------------------------------------
    gateway_host: str = Field("127.0.0.1", description="the embedded store's query gateway binds here")
    query_timeout_s: float = Field(
        10, gt=0, description="longest an ad-hoc read (`stancestream sql`, the gateway) may run: the embedded store "
                              "runs one query at a time, so a long one holds the worker's writes back")

    @model_validator(mode="after")
    def _cluster_needs_a_server(self) -> "Settings":
        if self.clickhouse_cluster and self.clickhouse_url is None:
            raise ValueError("STANCESTREAM_CLICKHOUSE_CLUSTER needs CLICKHOUSE_URL: the embedded chDB is one node")
        return self

    @field_validator("adapter", mode="before")
    @classmethod
    def _no_adapter(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "base") else value

    @field_validator("clickhouse_cluster", mode="before")
    @classmethod
    def _no_cluster(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _metrics_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off", "none") else value

    @field_validator("trainer_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"not a cron expression: {value!r} (expected 5 fields, e.g. `0 3 * * *`)")
        return value or None

    @field_validator("drift_reference", mode="before")
    @classmethod
    def _valid_reference(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            parse_time_window(value)  # a malformed window fails here, at start-up, with its reason
        return value

    @property
    def drift_reference_window(self) -> tuple[datetime, datetime] | None:
        return parse_time_window(self.drift_reference) if self.drift_reference else None

    @property
    def chdb_dir(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def adapters_dir(self) -> Path:
        return self.registry_dir or self.data_dir / "adapters"


class SettingError(StancestreamError):
    """A setting whose value cannot mean anything. Not a ValueError, so that pydantic lets it through unwrapped and
    the CLI prints its one line."""


def parse_time_window(text: str) -> tuple[datetime, datetime]:
    """``START/END`` in ISO 8601 (e.g. ``2026-11-01T00:00Z/2026-11-02T00:00Z``; UTC unless an offset says
    otherwise) as two aware UTC datetimes; SettingError with a one-line reason otherwise."""
    example = "e.g. 2026-11-01T00:00Z/2026-11-02T00:00Z"
    parts = text.strip().split("/")
    if len(parts) != 2:
        raise SettingError(f"STANCESTREAM_DRIFT_REFERENCE={text!r} is not START/END ({example})")
    ends = []
    for what, part in zip(("START", "END"), parts):
        try:
            moment = datetime.fromisoformat(part.strip())
        except ValueError:
            raise SettingError(f"STANCESTREAM_DRIFT_REFERENCE: {what} {part.strip()!r} is not an ISO 8601 time "
                             f"({example})") from None
        ends.append(moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc))
    if ends[0] >= ends[1]:
        raise SettingError(f"STANCESTREAM_DRIFT_REFERENCE={text!r}: START must be before END")
    return ends[0], ends[1]


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting: the README's table comes from this."""
    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else f"STANCESTREAM_{name.upper()}"
        default = field.default.value if isinstance(field.default, Enum) else field.default
        if field.default_factory is not None:
            default = "adapters/default" if name == "adapter" else "(computed)"
        rows.append((env, "" if default is None else str(default), field.description or ""))
    return rows
