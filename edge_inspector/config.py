"""The station's configuration: YAML, validated by pydantic, with ``--set dotted.key=value`` overrides.

A bad config is a :class:`ConfigError` whose message names each key path and what is wrong; the CLI
prints it and exits with status 2. Relative paths are relative to the config file's directory (those
given with ``--set`` to the current one); the defaults (the default recipe) live under the package's
folder, so they hold from any directory.
Secrets are never in the file: fields of type SecretRef take ``env:NAME`` or ``file:PATH``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from edge_inspector.api.config import ApiConfig
from edge_inspector.capture.basler import BaslerSourceConfig
from edge_inspector.capture.demo import DemoSourceConfig
from edge_inspector.capture.folder import FolderSourceConfig
from edge_inspector.capture.opencv import OpenCVSourceConfig
from edge_inspector.config_base import CliValue, ConfigModel, ConfigPath
from edge_inspector.errors import ConfigError
from edge_inspector.judge.anomaly import AnomalyJudgeConfig
from edge_inspector.judge.openai.config import OpenAIJudgeConfig
from edge_inspector.judge.vlm.config import VlmJudgeConfig
from edge_inspector.outputs.images import RejectImagesConfig
from edge_inspector.outputs.mqtt.config import MqttConfig
from edge_inspector.plc.config import NoPlcConfig, PlcConfig
from edge_inspector.policy import PolicyConfig
from edge_inspector.regions.texture import TextureConfig
from edge_inspector.regions.variation import VariationConfig
from edge_inspector.service.config import ServiceConfig

CaptureConfig = Annotated[FolderSourceConfig | DemoSourceConfig | BaslerSourceConfig | OpenCVSourceConfig,
                          Field(discriminator="kind")]
RegionsConfig = Annotated[VariationConfig | TextureConfig, Field(discriminator="kind")]
JudgeConfig = Annotated[AnomalyJudgeConfig | VlmJudgeConfig | OpenAIJudgeConfig, Field(discriminator="kind")]


class StationConfig(ConfigModel):
    name: str = Field("station-1", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="The station's name: in logs, records and MQTT topics.")
    data_dir: ConfigPath = Field(Path("/var/lib/edge-inspector"), description="Where the database "
                                 "and the reject images live.")


class StoreConfig(ConfigModel):
    path: Path = Field(Path("inspections.db"), description="The SQLite database, relative to "
                       "station.data_dir.")


class TriggersConfig(ConfigModel):
    timer_hz: float | None = Field(None, gt=0, le=1000, description="Fire the trigger input at this "
                                   "rate (a line without a part-present signal, a bench). Null: only "
                                   "the PLC link, commands or the camera's own trigger make parts.")


class PipelineConfig(ConfigModel):
    queue_size: int = Field(8, ge=1, le=1024, description="Parts waiting for inspection at most.")
    judge_grace_ms: float = Field(50.0, ge=0, description="How long past the deadline the daemon "
                                  "waits for a judge before it gives the part up as a timeout.")
    test_judge_faults: ConfigPath | None = Field(None, description=(
        "TEST FACILITY (tools/soak.py), never on a station: a JSON file that makes the judge stall, "
        "fail or answer NaN on demand (edge_inspector/judge/faults.py). Null: off."))


class LoggingConfig(ConfigModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["json", "console"] = Field("json", description="json for journald and log "
                                               "shippers, console for people.")


class Config(ConfigModel):
    station: StationConfig = Field(default_factory=StationConfig, description="The station.")
    capture: CaptureConfig = Field(default_factory=DemoSourceConfig, description="Where frames come from.")
    regions: RegionsConfig = Field(default_factory=VariationConfig, description="The first stage: "
                                   "anomaly map and boxes.")
    judge: JudgeConfig = Field(default_factory=AnomalyJudgeConfig, description="The judge.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="From verdict to decision.")
    triggers: TriggersConfig = Field(default_factory=TriggersConfig, description="The daemon's trigger "
                                     "input for software-triggered cameras.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="The inspection loop.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The SQLite store.")
    images: RejectImagesConfig = Field(default_factory=RejectImagesConfig, description="Reject images.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logs.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Results, availability, state and "
                             "stats over MQTT from a durable outbox; off until mqtt.host is set.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="Control socket, "
                                   "watchdog, retention (the daemon under systemd).")
    plc: PlcConfig = Field(default_factory=NoPlcConfig, description="The link to the line's PLC: "
                           "bridge (firmware bridge on serial), modbus_rtu or none.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="The HTTP API, Prometheus metrics "
                           "and the local page; loopback by default.")

    @model_validator(mode="before")
    @classmethod
    def fill_default_kinds(cls, data: Any) -> Any:
        """``regions`` and ``judge`` sections may leave out ``kind`` (the default model)."""
        if isinstance(data, dict):
            for section, kind in (("regions", "variation"), ("judge", "anomaly")):
                if isinstance(data.get(section), dict) and "kind" not in data[section]:
                    data = {**data, section: {"kind": kind, **data[section]}}
        return data

    @model_validator(mode="after")
    def _pause_pass_twice(self) -> Config:
        if self.policy.failsafe.paused == "PASS" and not self.service.allow_pause_pass:
            raise ValueError("policy.failsafe.paused: PASS lets a paused station pass parts uninspected; "
                             "it also needs service.allow_pause_pass: true (pause opens the gate only "
                             "when the config says so in two places)")
        return self

    @property
    def db_path(self) -> Path:
        return Path(self.station.data_dir) / self.store.path

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}: the value is nested too deeply") from None
    if isinstance(value, str):
        value = CliValue(value)  # a path in it is relative to the current directory
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: {'.'.join(keys[:i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """Dotted key path of a pydantic error location, without the union tags pydantic inserts."""
    parts, node = [], data
    for item in loc:
        if isinstance(node, dict) and item not in node and item == node.get("kind"):
            continue  # a discriminated union's tag, not a key of the input
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else (
            node[item] if isinstance(node, list) and isinstance(item, int) and item < len(node) else None)
    return ".".join(parts) or "(top level)"


def format_errors(exc: ValidationError, data: Any, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; `edge-inspector config schema` lists the keys)"
        lines.append(f"  {_key_path(tuple(err['loc']), data)}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load and validate a config file (or the defaults) with overrides. Raises ConfigError."""
    data: dict[str, Any] = {}
    source = "defaults"
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the "
                              "config file as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a config") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
        base_dir = path.resolve().parent
    data = Config.fill_default_kinds(apply_overrides(data, overrides or []))
    if isinstance(data.get("capture"), dict) and "kind" not in data["capture"]:
        raise ConfigError(f"{source}: invalid configuration\n  capture.kind: required (which source: "
                          "demo, folder, basler, opencv)")
    try:
        cfg = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, data, source)) from None
    regions_overrides = [o for o in overrides or [] if parse_override(o)[0][0] == "regions"]
    return _with_recipe_regions(cfg, regions_overrides, base_dir)


def _with_recipe_regions(cfg: Config, overrides: list[str], base_dir: Path) -> Config:
    """A recipe with a ``regions`` block chooses the product's regions model: it replaces the station's
    regions section (its paths are relative to the recipe). The command line's ``--set regions.*``
    overrides still win, applied on top of the recipe's block (one that changes ``regions.kind``
    leaves the recipe's block out). A missing recipe is the judge's to report."""
    recipe = getattr(cfg.judge, "recipe", None)
    if recipe is None or not Path(recipe).is_file():
        return cfg
    try:
        block = (yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}).get("regions")
    except (OSError, yaml.YAMLError, AttributeError):
        return cfg  # the judge's recipe loader reports a broken recipe with its own message
    if block is None:
        return cfg
    data = Config.fill_default_kinds({"regions": block})
    try:
        block = _RecipeRegions.model_validate(data, context={"base_dir": Path(recipe).resolve().parent})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, data, f"recipe {recipe}")) from None
    if not overrides:
        return cfg.model_copy(update={"regions": block.regions})
    data = Config.fill_default_kinds(apply_overrides({"regions": block.regions.model_dump()}, overrides))
    if data["regions"].get("kind") != block.regions.kind:
        return cfg  # the overrides chose another regions model: the station's section with them
    try:
        merged = _RecipeRegions.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, data, f"recipe {recipe} with the --set overrides")) from None
    return cfg.model_copy(update={"regions": merged.regions})


class _RecipeRegions(ConfigModel):
    regions: RegionsConfig = Field(description="A recipe's regions block.")


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
