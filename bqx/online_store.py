"""bqx's Feast online store for Redis: Feast's own layout plus one packed row per view.

Feast's stock Redis read of ``online_v1`` (28 pairs x 127 features) spends most of
its time in Python: one protobuf ``Value`` per feature value to decode, then one
type conversion per value in ``OnlineResponse.to_dict``. This store keeps Feast's
layout untouched (every stock reader, ``feast`` CLI and feature server still work)
and writes beside it, in the same Redis hash, one packed row per feature view::

    field  _bqx:<view>     fingerprint (8 bytes) | event time (int64 us) |
                           null flags (1 byte per feature) | values (8 bytes each)
    field  _bqx_ts:<view>  event time in microseconds (decimal), for the newer-wins
                           check done inside Redis

``get_online_features`` then reads every view of every requested entity with one
``HMGET`` per entity in one pipeline and decodes each view's rows with one
``numpy.frombuffer``; the response (:class:`BqxOnlineResponse`) gives the same
``to_dict``/``to_df``/``to_arrow`` values and the same ``proto`` as Feast's, built
only when asked for. Requests the packed rows cannot answer (on-demand views,
version metadata, types other than float/int/bool, rows written before a schema
change) take Feast's stock path, so the answer never depends on the path.

Configured in ``feature_store.production.yaml``::

    online_store:
      type: bqx.online_store.BqxRedisOnlineStore
      connection_string: ...   # as for Feast's redis store
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
from feast import utils
from feast.infra.online_stores.helpers import _redis_key, _redis_key_prefix
from feast.infra.online_stores.redis import (
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    _versioned_fv_name,
)
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import (
    FieldStatus,
    GetOnlineFeaturesResponse,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

logger = logging.getLogger(__name__)

# value type -> (proto field, Python type of to_dict, stored as int64?)
_KINDS: dict[ValueType, tuple[str, type, bool]] = {
    ValueType.DOUBLE: ("double_val", float, False),
    ValueType.FLOAT: ("float_val", float, False),
    ValueType.INT64: ("int64_val", int, True),
    ValueType.INT32: ("int32_val", int, True),
    ValueType.BOOL: ("bool_val", bool, True),
}
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

# Newer wins, as in Feast's Redis store (a row not newer than the stored one is
# skipped): compare and write in one step inside Redis.
_WRITE_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""


class BqxRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis online store options (``connection_string``, ``key_ttl_seconds``...)."""

    type: Literal["bqx.online_store.BqxRedisOnlineStore"] = (  # type: ignore[assignment]
        "bqx.online_store.BqxRedisOnlineStore"
    )


@dataclass(frozen=True)
class _Layout:
    """How one feature view's rows are packed."""

    names: tuple[str, ...]
    kinds: tuple[ValueType, ...]
    fingerprint: bytes
    dtype: np.dtype

    @classmethod
    def of(cls, table) -> Optional["_Layout"]:
        names, kinds = [], []
        for field in table.features:
            kind = field.dtype.to_value_type()
            if kind not in _KINDS:
                return None  # e.g. strings or lists: Feast's stock path
            names.append(field.name)
            kinds.append(kind)
        spec = "|".join(f"{n}:{k.name}" for n, k in zip(names, kinds))
        n = len(names)
        dtype = np.dtype(
            [("fp", "S8"), ("ts", "<i8"), ("null", "u1", (n,)), ("val", "<f8", (n,))]
        )
        return cls(
            tuple(names), tuple(kinds), hashlib.sha1(spec.encode()).digest()[:8], dtype
        )

    def pack(self, values: dict[str, ValueProto], event_ts: datetime) -> bytes:
        row = np.zeros((), dtype=self.dtype)
        row["fp"] = self.fingerprint
        row["ts"] = _micros(event_ts)
        nulls = np.zeros(len(self.names), dtype=np.uint8)
        floats = np.zeros(len(self.names), dtype="<f8")
        ints = floats.view("<i8")
        for j, (name, kind) in enumerate(zip(self.names, self.kinds)):
            value = values.get(name)
            which = value.WhichOneof("val") if value is not None else None
            if which is None or which == "null_val":
                nulls[j] = 1
            elif _KINDS[kind][2]:
                ints[j] = int(getattr(value, which))
            else:
                floats[j] = getattr(value, which)
        row["null"] = nulls
        row["val"] = floats
        return row.tobytes()


_LAYOUTS: dict[tuple, Optional[_Layout]] = {}


def _layout(table) -> Optional[_Layout]:
    key = (table.name, tuple((f.name, f.dtype) for f in table.features))
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _Layout.of(table)
    return _LAYOUTS[key]


def _micros(ts: datetime) -> int:
    ts = utils.make_tzaware(ts)
    delta = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rfc3339(micros: int) -> str:
    """A protobuf Timestamp as Feast's feature server writes it (adaptive digits)."""
    seconds, frac = divmod(micros, 1_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}Z"


@dataclass
class _Block:
    """The requested features of one view for every output row."""

    names: list[str]  # output names (view__feature with full feature names)
    kinds: list[ValueType]
    columns: list[int]  # positions in the packed row
    found: np.ndarray  # bool per output row
    ts: np.ndarray  # int64 microseconds per output row (0: not found)
    nulls: np.ndarray  # bool (rows x stored features)
    values: np.ndarray  # float64 (rows x stored features); ints by view

    def all_columns(self) -> list[list]:
        """Every output column as Python values (None: null or not found),
        converted in a few array operations for the whole block."""
        if not self.names:
            return []
        cols = np.asarray(self.columns)
        raw = self.values[:, cols]
        py = [_KINDS[k][1] for k in self.kinds]
        if all(t is float for t in py):
            obj = raw.astype(object)
        else:
            obj = np.empty(raw.shape, dtype=object)
            for t in set(py):
                at = [k for k, u in enumerate(py) if u is t]
                part = raw[:, at]
                if t is int:
                    part = part.view("<i8")
                elif t is bool:
                    part = part.view("<i8") != 0
                obj[:, at] = part.astype(object)
        obj[self.nulls[:, cols] | ~self.found[:, None]] = None
        return obj.T.tolist()


class BqxOnlineResponse(OnlineResponse):
    """Feast's ``OnlineResponse`` over packed rows: same values, no per-value protos.

    ``proto`` (Feast's ``GetOnlineFeaturesResponse``) is built on first access.
    """

    def __init__(
        self,
        head: GetOnlineFeaturesResponse,
        blocks: list[_Block],
        feature_types: dict[str, ValueType],
    ):
        # no super().__init__: it needs the whole proto, which is what we avoid
        self._head = head  # the entity (join key) columns, as Feast builds them
        self._blocks = blocks
        self._feature_types = feature_types
        self._proto: Optional[GetOnlineFeaturesResponse] = None

    @property
    def proto(self) -> GetOnlineFeaturesResponse:  # type: ignore[override]
        if self._proto is None:
            self._proto = self._build_proto()
        return self._proto

    @proto.setter
    def proto(self, value: GetOnlineFeaturesResponse) -> None:
        self._proto = value

    def _head_columns(self):
        return zip(self._head.metadata.feature_names.val, self._head.results)

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, vector in self._head_columns():
            kind = self._feature_types.get(name)
            out[name] = [feast_value_type_to_python_type(v, kind) for v in vector.values]
            if include_event_timestamps:
                out[name + "__ts"] = [ts.seconds for ts in vector.event_timestamps]
        for block in self._blocks:
            seconds = (
                (block.ts // 1_000_000).tolist() if include_event_timestamps else None
            )
            for name, column in zip(block.names, block.all_columns()):
                out[name] = column
                if seconds is not None:
                    out[name + "__ts"] = list(seconds)
        return out

    def to_json_dict(self) -> dict[str, Any]:
        """What Feast's feature server answers for this response (its JSON body)."""
        from feast.feature_server_utils import convert_response_to_dict

        head = convert_response_to_dict(self._head)
        results = head["results"]
        names = list(self._head.metadata.feature_names.val)
        texts: dict[int, str] = {}  # the rows of a view mostly share one event time
        for block in self._blocks:
            stamps = [
                (texts.get(t) or texts.setdefault(t, _rfc3339(t)))
                if f
                else "1970-01-01T00:00:00Z"
                for t, f in zip(block.ts.tolist(), block.found.tolist())
            ]
            statuses = ["PRESENT"] * len(stamps)  # as Feast's Redis store: see _build_proto
            finite = np.isfinite(block.values[:, block.columns]).all(axis=0).tolist()
            for k, (name, values) in enumerate(zip(block.names, block.all_columns())):
                if not finite[k] and _KINDS[block.kinds[k]][1] is float:
                    values = [
                        v if v is None or math.isfinite(v) else _NON_FINITE.get(v, "NaN")
                        for v in values
                    ]
                # the statuses and stamps lists are shared by a view's features
                results.append(
                    {"values": values, "statuses": statuses, "event_timestamps": stamps}
                )
                names.append(name)
        head["metadata"] = {**head.get("metadata", {}), "feature_names": names}
        return head

    def _build_proto(self) -> GetOnlineFeaturesResponse:
        response = GetOnlineFeaturesResponse()
        response.CopyFrom(self._head)
        null_ts = Timestamp()
        for block in self._blocks:
            stamps = []
            for t, f in zip(block.ts.tolist(), block.found.tolist()):
                if f:
                    seconds, frac = divmod(t, 1_000_000)
                    stamps.append(Timestamp(seconds=seconds, nanos=frac * 1000))
                else:
                    stamps.append(null_ts)
            # Feast's Redis store marks an entity it does not hold PRESENT too
            # (empty values, event time 0): the same answer, whichever the path
            statuses = [FieldStatus.PRESENT] * len(stamps)
            for k, (name, column) in enumerate(zip(block.names, block.all_columns())):
                field = _KINDS[block.kinds[k]][0]
                values = [
                    ValueProto() if v is None else ValueProto(**{field: v}) for v in column
                ]
                response.metadata.feature_names.val.append(name)
                response.results.append(
                    GetOnlineFeaturesResponse.FeatureVector(
                        values=values, statuses=statuses, event_timestamps=stamps
                    )
                )
        return response


class BqxRedisOnlineStore(RedisOnlineStore):
    """Feast's Redis online store with packed rows for fast whole-service reads."""

    _script = None

    # --- writes ---------------------------------------------------------------

    def online_write_batch(
        self,
        config,
        table,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, Optional[datetime]]],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        super().online_write_batch(config, table, data, progress)
        layout = _layout(table)
        if layout is None or not data:
            return
        client = self._get_client(config.online_store)
        if self._script is None:
            self._script = client.register_script(_WRITE_IF_NEWER)
        fv_name = _versioned_fv_name(table, config)
        ts_field, row_field = f"_bqx_ts:{fv_name}", f"_bqx:{fv_name}"
        key_ttl = config.online_store.key_ttl_seconds
        with client.pipeline(transaction=False) as pipe:
            for entity_key, values, event_ts, _ in data:
                key = _redis_key(
                    config.project,
                    entity_key,
                    entity_key_serialization_version=config.entity_key_serialization_version,
                )
                self._script(
                    keys=[key],
                    args=[ts_field, _micros(event_ts), row_field, layout.pack(values, event_ts)],
                    client=pipe,
                )
                if key_ttl:
                    pipe.expire(name=key, time=key_ttl)
            pipe.execute()

    def delete_table(self, config, table) -> None:
        super().delete_table(config, table)
        client = self._get_client(config.online_store)
        fv_name = _versioned_fv_name(table, config)
        pattern = b"".join(
            [_redis_key_prefix(table.join_keys), b"*", config.project.encode("utf8")]
        )
        keys = list(client.scan_iter(pattern))
        if keys:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hdel(key, f"_bqx:{fv_name}", f"_bqx_ts:{fv_name}")
                pipe.execute()

    # --- reads ----------------------------------------------------------------

    def get_online_features(
        self,
        config,
        features,
        entity_rows,
        registry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        response = None
        if not include_feature_view_version_metadata:
            response = self._read_packed(
                config, features, entity_rows, registry, project, full_feature_names
            )
        if response is None:
            return super().get_online_features(
                config,
                features,
                entity_rows,
                registry,
                project,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        return response

    def _read_packed(
        self, config, features, entity_rows, registry, project, full_feature_names
    ) -> Optional[BqxOnlineResponse]:
        """The response from the packed rows, or None where they cannot answer."""
        if isinstance(entity_rows, list):
            if not entity_rows:
                return None
            columnar: dict[str, list] = {k: [] for k in entity_rows[0]}
            for row in entity_rows:
                if row.keys() != columnar.keys():
                    return None  # Feast's path raises its own error
                for k, v in row.items():
                    columnar[k].append(v)
            entity_rows = columnar
        (
            join_key_values,
            grouped_refs,
            entity_name_to_join_key_map,
            on_demand_views,
            _,
            requested_result_row_names,
            head,
        ) = utils._prepare_entities_to_read_from_online_store(
            registry=registry,
            project=project,
            features=features,
            entity_values=entity_rows,
            full_feature_names=full_feature_names,
            native_entity_values=True,
        )
        if on_demand_views or not grouped_refs:
            return None
        layouts = []
        for table, requested in grouped_refs:
            layout = _layout(table)
            if (
                layout is None
                or getattr(table.projection, "version_tag", None) is not None
                or not set(requested) <= set(layout.names)
            ):
                return None
            layouts.append(layout)

        # one HMGET per entity key, every view's packed row (views sharing join
        # keys share the Redis hash of an entity)
        version = config.entity_key_serialization_version
        entities: dict[tuple, tuple] = {}  # join keys -> (keys, indexes, rows, fields)
        slots = []  # per view: (join keys, position of its field in the HMGET)
        for table, _ in grouped_refs:
            jk = tuple(table.join_keys)
            if jk not in entities:
                unique, indexes, n_rows = utils._get_unique_entities(
                    table, join_key_values, entity_name_to_join_key_map
                )
                keys = [
                    _redis_key(project, k, entity_key_serialization_version=version)
                    for k in utils._get_entity_key_protos(unique)
                ]
                # output row -> its unique entity (the order of `keys`)
                source = np.empty(n_rows, dtype=np.int64)
                for i, out in enumerate(indexes):
                    source[out] = i
                entities[jk] = (keys, source, n_rows, [])
            view_fields = entities[jk][3]
            slots.append((jk, len(view_fields)))
            view_fields.append(f"_bqx:{_versioned_fv_name(table, config)}")
        client = self._get_client(config.online_store)
        with client.pipeline(transaction=False) as pipe:
            for keys, _, _, view_fields in entities.values():
                for key in keys:
                    pipe.hmget(key, view_fields)
            replies = iter(pipe.execute())
        replies_by_jk = {jk: [next(replies) for _ in e[0]] for jk, e in entities.items()}

        blocks = []
        for (table, requested), layout, (jk, slot) in zip(grouped_refs, layouts, slots):
            _, source, n_rows, _ = entities[jk]
            blobs = [reply[slot] for reply in replies_by_jk[jk]]
            prefix = f"{table.projection.name_to_use()}__" if full_feature_names else ""
            block = _decode(layout, blobs, source, n_rows, requested, prefix)
            if block is None:
                return None  # written before a schema change: Feast's path
            blocks.append(block)

        utils._drop_unneeded_columns(head, requested_result_row_names)
        # what Feast's _build_feature_types gives, from the layouts' value types
        feature_types: dict[str, ValueType] = {}
        for (table, requested), layout in zip(grouped_refs, layouts):
            view = table.projection.name_to_use()
            wanted = set(requested)
            for name, kind in zip(layout.names, layout.kinds):
                if name in wanted:
                    feature_types[name] = feature_types[f"{view}__{name}"] = kind
        return BqxOnlineResponse(head, blocks, feature_types)


def _decode(
    layout: _Layout,
    blobs: Sequence[Optional[bytes]],
    source: np.ndarray,
    n_rows: int,
    requested: Sequence[str],
    prefix: str,
) -> Optional[_Block]:
    """The requested features of one view: the packed rows of the unique entities
    (`blobs`) spread over the output rows, row i taking blob source[i] (None: a
    row of another schema)."""
    n = len(layout.names)
    found = np.zeros(n_rows, dtype=bool)
    ts = np.zeros(n_rows, dtype=np.int64)
    nulls = np.ones((n_rows, n), dtype=bool)
    values = np.zeros((n_rows, n), dtype="<f8")
    present = [i for i, b in enumerate(blobs) if b is not None]
    if present:
        if any(len(blobs[i]) != layout.dtype.itemsize for i in present):
            return None
        rows = np.frombuffer(b"".join(blobs[i] for i in present), dtype=layout.dtype)
        if (rows["fp"] != layout.fingerprint).any():
            return None
        # output row -> its row in `rows` (-1: entity not found)
        of_unique = np.full(len(blobs), -1, dtype=np.int64)
        of_unique[present] = np.arange(len(present))
        row_of = of_unique[source]
        found = row_of >= 0
        picked = row_of[found]
        ts[found] = rows["ts"][picked]
        nulls[found] = rows["null"][picked] != 0
        values[found] = rows["val"][picked]
    columns = [layout.names.index(name) for name in requested]
    return _Block(
        names=[prefix + name for name in requested],
        kinds=[layout.kinds[j] for j in columns],
        columns=columns,
        found=found,
        ts=ts,
        nulls=nulls,
        values=values,
    )
