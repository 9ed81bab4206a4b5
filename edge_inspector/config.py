"""The station's configuration: YAML, validated by pydantic, with ``--set dotted.key=value`` overrides.

A bad config is a :class:`ConfigError` whose message names each key path and what is wrong; the CLI
prints it and exits with status 2. Relative paths are relative to the config file's directory (those
given with ``--set`` to the current one); the defaults (the default recipe) live under the package's
folder, so they hold from any directory.
Secrets are never in the file: fields of type SecretRef take ``env:NAME`` or ``file:PATH``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

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
from edge_inspector.regions.texture_config import TextureConfig
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


class ModelsConfig(ConfigModel):
    dir: ConfigPath | None = Field(None, description="The model registry: a folder per model version "
                                   "(`edge-inspector model list`) and the `current` pointer that "
                                   "judge.model_version: current follows. Null: <station.data_dir>/models.")
    promote_overkill_margin: float = Field(0.0, ge=0.0, le=1.0, description=(
        "`model promote` refuses a candidate whose overkill rate (good parts rejected) on the "
        "evaluation recording exceeds the current version's by more than this (0.02: two points)."))


class LoggingConfig(ConfigModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["json", "console"] = Field("json", description="json for journald and log "
                                               "shippers, console for people.")


RESERVED_CAMERA_NAMES = frozenset({"available", "result", "state", "stats", "reject_image", "set",
                                   "reply", "status"})  # the station's own MQTT topic segments


class CameraConfig(ConfigModel):
    """One camera of a multi-camera station (``cameras:``). What it leaves out comes from the
    station's sections (``regions``, ``triggers``, ``policy.deadline_ms``, the judge's recipe)."""

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="The camera's name: in rows, status, MQTT topics "
                      "(<prefix>/<station>/<camera>/result) and reject image names.")
    capture: CaptureConfig = Field(..., description="Where this camera's frames come from (its "
                                   "source and, for basler/opencv, its trigger mode).")
    triggers: TriggersConfig | None = Field(None, description="This camera's software trigger "
                                            "input; null: the station's ``triggers`` section.")
    recipe: ConfigPath | None = Field(None, description="This camera's product recipe: the shared "
                                      "vlm/openai judge prompts with it for this camera's parts, and "
                                      "its regions block chooses the camera's regions model. Null: "
                                      "the judge's recipe.")
    regions: RegionsConfig | None = Field(None, description="This camera's regions model (wins over "
                                          "the recipe's block); null: the recipe's, else the "
                                          "station's ``regions`` section.")
    deadline_ms: float | None = Field(None, gt=0, description="This camera's deadline from trigger "
                                      "to decision; null: policy.deadline_ms.")
    plc: PlcConfig = Field(default_factory=NoPlcConfig, description="This camera's PLC lane: its own "
                           "bridge (one bridge drives one reject gate: a lane is a bridge on its "
                           "own serial port) or its own Modbus RTU slave (port and unit_id); none: "
                           "store and MQTT only.")
    view_set: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                 description="Cameras with the same view_set see one part per "
                                 "trigger: the part's decision combines their views (any REJECT: "
                                 "REJECT; else any NO-READ: NO-READ; else PASS). Rows, topics and "
                                 "the lane are the view set's.")

    @model_validator(mode="before")
    @classmethod
    def _default_regions_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("regions"), dict) and "kind" not in data["regions"]:
            data = {**data, "regions": {"kind": "variation", **data["regions"]}}
        return data


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
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Model versions: the "
                                 "registry, and the rule that promotes a candidate.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Results, availability, state and "
                             "stats over MQTT from a durable outbox; off until mqtt.host is set.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="Control socket, "
                                   "watchdog, retention (the daemon under systemd).")
    plc: PlcConfig = Field(default_factory=NoPlcConfig, description="The link to the line's PLC: "
                           "bridge (firmware bridge on serial), modbus_rtu or none.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="The HTTP API, Prometheus metrics "
                           "and the local page; loopback by default.")
    cameras: list[CameraConfig] | None = Field(None, min_length=1, description="A multi-camera "
                                               "station: each camera with its own source, trigger, "
                                               "recipe, regions, deadline and PLC lane, one judge "
                                               "shared by all (docs/cameras.md). Null: one camera, "
                                               "the ``capture`` section, named after its source.")

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, cameras: list[CameraConfig] | None) -> list[CameraConfig] | None:
        if not cameras:
            return cameras
        seen: dict[str, int] = {}
        sets: dict[str, list[CameraConfig]] = {}
        for i, cam in enumerate(cameras):
            if cam.name in seen:
                raise ValueError(f"cameras.{i}.name: duplicate camera name {cam.name!r} (also "
                                 f"cameras.{seen[cam.name]}.name); each camera needs its own name")
            if cam.name in RESERVED_CAMERA_NAMES:
                raise ValueError(f"cameras.{i}.name: {cam.name!r} is one of the station's own MQTT "
                                 f"topics ({', '.join(sorted(RESERVED_CAMERA_NAMES))}); choose another")
            seen[cam.name] = i
            if cam.view_set is not None:
                sets.setdefault(cam.view_set, []).append(cam)
                if getattr(cam.capture, "trigger", None) == "software":
                    raise ValueError(f"cameras.{i}.capture.trigger: a view set's cameras make their "
                                     "own triggers (hardware or free_run, or a demo/folder source); "
                                     "software triggers in a view set are not supported")
        for name, members in sets.items():
            where = f"view_set {name!r}"
            if name in seen:
                raise ValueError(f"{where}: a view set needs a name no camera has")
            if name in RESERVED_CAMERA_NAMES:
                raise ValueError(f"{where}: {name!r} is one of the station's own MQTT topics")
            if len({m.deadline_ms for m in members}) > 1:
                raise ValueError(f"{where}: its cameras see one part, so they need the same deadline_ms")
            if len({m.triggers for m in members}) > 1:
                raise ValueError(f"{where}: its cameras see one part, so they need the same triggers")
            if sum(m.plc.kind != "none" for m in members) > 1:
                raise ValueError(f"{where}: one part has one gate: give the plc lane to one of its "
                                 "cameras only")
        return cameras

    @model_validator(mode="after")
    def _cameras_own_their_lanes(self) -> Config:
        if not self.cameras:
            return self
        if "capture" in self.model_fields_set:
            raise ValueError("capture: with cameras:, each camera has its own capture section; "
                             "move it under cameras.<n>.capture")
        if self.plc.kind != "none":
            raise ValueError("plc: with cameras:, each camera (or view set) has its own PLC lane "
                             "(cameras.<n>.plc); the station-level plc must be none")
        return self

    @property
    def multi_camera(self) -> bool:
        return bool(self.cameras)

    def camera_configs(self) -> dict[str, Config]:
        """Each camera's effective config (its own capture, triggers, regions, deadline, PLC lane;
        the rest the station's), by camera name. Without ``cameras:`` one camera, named after its
        source (``capture.name``), whose config is this one. Raises ConfigError for a recipe whose
        regions block is invalid."""
        if not self.cameras:
            return {self.capture.name: self}
        out: dict[str, Config] = {}
        for cam in self.cameras:
            update: dict[str, Any] = {"capture": cam.capture.model_copy(update={"name": cam.name}),
                                      "plc": cam.plc, "cameras": None}
            if cam.triggers is not None:
                update["triggers"] = cam.triggers
            if cam.deadline_ms is not None:
                update["policy"] = self.policy.model_copy(update={"deadline_ms": cam.deadline_ms})
            if cam.regions is not None:
                update["regions"] = cam.regions
            if cam.recipe is not None and getattr(self.judge, "recipe", None) is not None:
                update["judge"] = self.judge.model_copy(update={"recipe": cam.recipe})
            one = self.model_copy(update=update)
            if cam.regions is None and cam.recipe is not None:
                one = _with_recipe_regions(one, [], Path.cwd(), recipe=cam.recipe)
            out[cam.name] = one
        return out

    @model_validator(mode="before")
    @classmethod
    def fill_default_kinds(cls, data: Any) -> Any:
        """``regions`` and ``judge`` sections may leave out ``kind`` (the default model)."""
        if isinstance(data, dict):
            for section, kind in (("regions", "variation"), ("judge", "anomaly")):
                if isinstance(data.get(section), dict) and "kind" not in data[section]:
                    data = {**data, section: {"kind": kind, **data[section]}}
            if isinstance(data.get("cameras"), list):  # each camera's regions section, likewise
                data = {**data, "cameras": [CameraConfig._default_regions_kind(c) for c in data["cameras"]]}
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

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir) if self.models.dir is not None else Path(self.station.data_dir) / "models"

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


_NAMED_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+|[A-Za-z_][A-Za-z0-9_]*): (.+)$", re.S)


def format_errors(exc: ValidationError, data: Any, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; `edge-inspector config schema` lists the keys)"
        where = _key_path(tuple(err["loc"]), data)
        named = _NAMED_KEY.match(msg)  # a cross-field check that names its own key, below ``where``
        if named and (where == "(top level)" or named.group(1).startswith(where)):
            where, msg = named.group(1), named.group(2)
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                resolve_model: bool = True) -> Config:
    """Load and validate a config file (or the defaults) with overrides. Raises ConfigError.
    ``resolve_model``: turn ``judge.model_version`` into the version's ``judge.model_dir`` (the
    ``model`` commands, which change the registry, read the config without)."""
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
    cfg = _with_recipe_regions(cfg, regions_overrides, base_dir)
    cfg = _with_model_version(cfg) if resolve_model else cfg
    cfg.camera_configs()  # each camera's recipe regions block: its errors now, at load
    return cfg


def _with_model_version(cfg: Config) -> Config:
    """``judge.model_version`` (a registry version, or ``current``) becomes the ``judge.model_dir`` of
    that version's weights, read now: a reload after ``model promote`` reads the new pointer."""
    name = getattr(cfg.judge, "model_version", None)
    if name is None:
        return cfg
    from edge_inspector.learn.models import ModelError, Registry

    if cfg.judge.model_dir is not None:
        raise ConfigError("judge.model_dir, judge.model_version: give one of the two (model_version "
                          "names a version of models.dir, model_dir a checkpoint directory)")
    try:
        version = Registry(cfg.models_dir).resolve(name)
    except ModelError as exc:
        raise ConfigError(f"judge.model_version: {name}: {exc}") from None
    return cfg.model_copy(update={"judge": cfg.judge.model_copy(update={"model_dir": version.weights})})


def _with_recipe_regions(cfg: Config, overrides: list[str], base_dir: Path,
                         recipe: Path | None = None) -> Config:
    """A recipe with a ``regions`` block chooses the product's regions model: it replaces the station's
    regions section (its paths are relative to the recipe). The command line's ``--set regions.*``
    overrides still win, applied on top of the recipe's block (one that changes ``regions.kind``
    leaves the recipe's block out). A missing recipe is the judge's to report."""
    recipe = recipe if recipe is not None else getattr(cfg.judge, "recipe", None)
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
