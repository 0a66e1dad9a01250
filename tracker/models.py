"""The tracker's records: teams, patients, treatments, visits, scans, analysis runs, their results,
assessments, reviews and the audit trail.

Public identifiers are opaque UUID ``code`` fields; database ids never leave the server. What must
never happen is a database constraint, not a hope: two scans of one sequence in a visit, a run
that is both done and failed, a review override without a category and a reason.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from inference.response import rano as response
from inference.response import timeline

# Free text (notes, review reasons) is bounded (API, forms, admin), so no record can make a page
# or the PDF unbounded; the PDF shows at most 500 characters of each.
TEXT_MAX = 4000


class CareTeam(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="care_teams"
    )

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(CareTeam, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in team {self.team_id}"


IDH_STATUS = [("mutant", "IDH-mutant"), ("wildtype", "IDH-wildtype"), ("unknown", "unknown")]


class Presentation(models.TextChoices):
    ENHANCING = "ce", "enhancing"
    NON_ENHANCING = "non-ce", "non-enhancing"
    MIXED = "mixed", "mixed"


class Setting(models.TextChoices):
    NEWLY_DIAGNOSED = "newly_diagnosed", "newly diagnosed"
    RECURRENT = "recurrent", "recurrent"


class Criteria(models.TextChoices):
    BIDIMENSIONAL = "rano2-2d", "RANO 2.0, bidimensional"
    VOLUMETRIC = "rano2-volumetric", "RANO 2.0, volumetric"


class Patient(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="patients")
    label = models.CharField(max_length=100, help_text="pseudonymous label, never a name")
    diagnosis = models.CharField(max_length=200, blank=True)
    who_grade = models.PositiveSmallIntegerField(null=True, blank=True)
    idh_status = models.CharField(
        max_length=20,
        blank=True,
        choices=IDH_STATUS,
    )
    presentation = models.CharField(
        max_length=10, choices=Presentation.choices, default=Presentation.ENHANCING
    )
    setting = models.CharField(
        max_length=20, choices=Setting.choices, default=Setting.NEWLY_DIAGNOSED
    )
    criteria = models.CharField(
        max_length=20, choices=Criteria.choices, default=Criteria.BIDIMENSIONAL
    )
    confirm_progression = models.BooleanField(default=True)
    physiologic_steroid_max_mg = models.DecimalField(max_digits=6, decimal_places=2, default=0.75)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when something the assessment depends on changed, cleared by the assessment that
    # covers it: a request whose message the broker lost is found by the sweeper.
    assessment_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "label"], name="one_label_per_team"),
            models.CheckConstraint(
                condition=Q(who_grade__isnull=True) | Q(who_grade__gte=1, who_grade__lte=4),
                name="who_grade_1_to_4",
            ),
        ]
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class TreatmentKind(models.TextChoices):
    SURGERY = "surgery", "surgery"
    RADIOTHERAPY = "radiotherapy", "radiotherapy"
    CHEMOTHERAPY = "chemotherapy", "chemotherapy"
    ANTIANGIOGENIC = "antiangiogenic", "anti-angiogenic therapy"
    STEROIDS = "steroids", "corticosteroid dose change"
    OTHER = "other", "other"


class TreatmentEvent(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="treatments")
    kind = models.CharField(max_length=20, choices=TreatmentKind.choices)
    started_on = models.DateField()
    ended_on = models.DateField(null=True, blank=True)
    dose_mg = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    notes = models.TextField(blank=True, max_length=TEXT_MAX)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_on__isnull=True) | Q(ended_on__gte=models.F("started_on")),
                name="treatment_ends_after_it_starts",
            ),
            models.CheckConstraint(
                condition=Q(dose_mg__isnull=True) | Q(dose_mg__gte=0), name="dose_not_negative"
            ),
        ]
        ordering = ["started_on"]

    def __str__(self) -> str:
        return f"{self.kind} from {self.started_on}"


class ClinicalStatus(models.TextChoices):
    STABLE = "stable", "stable"
    IMPROVED = "improved", "improved"
    WORSE = "worse", "worse"


class Visit(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="visits")
    acquired_on = models.DateField()
    clinical_status = models.CharField(
        max_length=10, choices=ClinicalStatus.choices, default=ClinicalStatus.STABLE
    )
    steroid_dose_mg = models.DecimalField(max_digits=6, decimal_places=2, default=0)
    non_target = models.CharField(
        max_length=10,
        default="absent",
        choices=[(v.value, v.value) for v in response.NonTarget],
        help_text="disease outside the measured lesions, as the radiologist reads it",
    )
    notes = models.TextField(blank=True, max_length=TEXT_MAX)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "acquired_on"], name="one_visit_per_day"),
            models.CheckConstraint(
                condition=Q(steroid_dose_mg__gte=0), name="steroids_not_negative"
            ),
        ]
        ordering = ["acquired_on"]

    def __str__(self) -> str:
        return f"visit of {self.acquired_on} ({self.code})"


# inference.labels.Sequence, as stored (tests/tracker/test_vocabulary.py holds them equal).
class SequenceName(models.TextChoices):
    T1 = "t1", "T1"
    T1C = "t1c", "T1 post-contrast"
    T2 = "t2", "T2"
    FLAIR = "flair", "FLAIR"


class RegistrationRole(models.TextChoices):
    """What a follow-up was registered to: the visit before it, or the timeline's baseline."""

    PRIOR = "prior", "prior"
    BASELINE = "baseline", "baseline"


class Scan(models.Model):
    """An original file as uploaded: stored once, never modified (sha256 recorded)."""

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="scans")
    sequence = models.CharField(max_length=10, choices=SequenceName.choices)
    file = models.FileField(max_length=300)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    geometry = models.JSONField(default=dict)  # size, spacing, origin, direction
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["visit", "sequence"], name="one_scan_per_sequence")
        ]

    def __str__(self) -> str:
        return f"{self.sequence} of visit {self.visit_id}"


class Stage(models.TextChoices):
    PREPARE = "prepare", "prepare"
    SEGMENT = "segment", "segment"
    REGISTER = "register", "register"
    MEASURE = "measure", "measure"
    ASSESS = "assess", "assess"
    DONE = "done", "done"


STAGE_ORDER = [Stage.PREPARE, Stage.SEGMENT, Stage.REGISTER, Stage.MEASURE, Stage.ASSESS]


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


def all_sequences() -> list[str]:
    return [s.value for s in SequenceName]


def all_regions() -> list[str]:
    return ["ET", "TC", "WT"]


class AnalysisRun(models.Model):
    """One analysis of one visit by one model version. ``stage`` and ``status`` together say
    where it is: (segment, running) is segmenting; (done, done) is finished. A stage is claimed
    by a compare-and-set update from (stage, queued) to (stage, running).

    ``sequences_used`` and ``supported_regions`` are written by the segment stage (a visit may
    lack any sequence but T1 post-contrast or FLAIR; see
    ``inference.segmentation.segment.REGION_NEEDS``); runs analysed before they were recorded had
    all four sequences, which the default says."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="runs")
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.PREPARE)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    stages = models.JSONField(default=dict)  # stage -> {status, started_at, seconds, error}
    model_name = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=50, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    sequences_used = models.JSONField(default=all_sequences)  # ["t1c", "flair"], ...
    supported_regions = models.JSONField(default=all_regions)  # ["ET", "TC", "WT"], ...
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    is_current = models.BooleanField(
        default=False, help_text="the run whose results are shown; set when it completes"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The worker process running the stage ("host:pid") and its last sign of life: a run whose
    # worker stopped beating is taken over at once by the next delivery or the sweeper.
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~(Q(status=RunStatus.DONE) & ~Q(error="")), name="done_run_has_no_error"
            ),
            models.CheckConstraint(
                condition=~Q(status=RunStatus.FAILED) | ~Q(error=""), name="failed_run_says_why"
            ),
            models.CheckConstraint(
                condition=Q(status=RunStatus.DONE, stage=Stage.DONE)
                | (~Q(status=RunStatus.DONE) & ~Q(stage=Stage.DONE)),
                name="done_means_every_stage_done",
            ),
            models.UniqueConstraint(
                fields=["visit"], condition=Q(is_current=True), name="one_current_run_per_visit"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.code}: {self.stage} {self.status}"

    @property
    def folder(self) -> str:
        return f"runs/{self.code}"


class Measurement(models.Model):
    run = models.OneToOneField(AnalysisRun, on_delete=models.CASCADE, related_name="measurement")
    # Per region and label; null where the run's sequences do not support it (the reasons follow
    # from run.sequences_used: inference.segmentation.segment.sequence_support).
    volumes_ml = models.JSONField()
    volume_intervals_ml = models.JSONField(default=dict)
    sum_of_products_mm2 = models.FloatField(
        null=True, help_text="null when the core cannot be measured (no T1 post-contrast)"
    )
    lesion_map = models.CharField(max_length=300)  # media path of the lesion-id map
    # media path of the T2/FLAIR lesion-id map (components of the whole tumour); blank when
    # the run's sequences hold neither FLAIR nor T2
    t2_flair_lesion_map = models.CharField(max_length=300, blank=True)
    segmentation = models.CharField(max_length=300)  # media path of seg.nii.gz
    probabilities = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"measurement of run {self.run_id}"


class LesionKind(models.TextChoices):
    CORE = timeline.LesionKind.CORE.value, "tumour core (T1 post-contrast)"
    T2_FLAIR = timeline.LesionKind.T2_FLAIR.value, "T2/FLAIR abnormality"


class Lesion(models.Model):
    """A lesion of one run: a component of the tumour core (enhancing disease is measured on
    it) or of the whole T2/FLAIR abnormality (non-enhancing disease, RANO-LGG and RANO 2.0)."""

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="lesions")
    kind = models.CharField(max_length=10, choices=LesionKind.choices, default=LesionKind.CORE)
    number = models.PositiveIntegerField(help_text="component id in its kind's lesion map")
    track = models.CharField(max_length=20, blank=True)
    volume_ml = models.FloatField()
    et_volume_ml = models.FloatField()
    longest_mm = models.FloatField()
    perpendicular_mm = models.FloatField()
    product_mm2 = models.FloatField()
    measurable = models.BooleanField()
    target = models.BooleanField(default=False)
    centroid_mm = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "number"], name="one_lesion_number_per_run_and_kind"
            ),
            models.CheckConstraint(
                condition=Q(perpendicular_mm__lte=models.F("longest_mm") + 1e-6),
                name="perpendicular_not_longer",
            ),
        ]
        ordering = ["kind", "number"]

    def __str__(self) -> str:
        return f"{self.kind} lesion {self.number} of run {self.run_id}"


class Registration(models.Model):
    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="registrations")
    to_visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=RegistrationRole.choices)
    transform = models.CharField(max_length=300)  # media path of the .tfm
    quality = models.JSONField(default=dict)
    passed = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "role"], name="one_registration_per_role")
        ]

    def __str__(self) -> str:
        return f"{self.role} registration of run {self.run_id}"


class Category(models.TextChoices):
    PRE_BASELINE = "pre_baseline", "before baseline"
    BASELINE = "baseline", "baseline"
    CR = "CR", "complete response"
    PR = "PR", "partial response"
    MR = "MR", "minor response"
    SD = "SD", "stable disease"
    PD = "PD", "progressive disease"
    INDETERMINATE = "indeterminate", "indeterminate"
    NOT_EVALUABLE = "NE", "not evaluable"


# What a reviewer may override a category to: a response category. Baseline and pre-baseline are
# the engine's choice of reference scan (change the treatment dates to move them), not a reading.
OVERRIDE_CATEGORIES: tuple[str, ...] = tuple(
    c for c in Category.values if c not in (Category.BASELINE, Category.PRE_BASELINE)
)


class Assessment(models.Model):
    """The engine's row for a visit, from the patient's latest assessment of the whole timeline
    (earlier ones are kept with ``is_current`` false)."""

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="assessments")
    category = models.CharField(max_length=20, choices=Category.choices)
    confirmed = models.BooleanField(null=True)
    reference_visit = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    relative_change = models.FloatField(null=True)
    reasons = models.JSONField(default=list)
    is_progression_visit = models.BooleanField(default=False)
    # the nadir of the timeline as the engine found it (one visit of the current assessments)
    is_nadir_visit = models.BooleanField(default=False)
    # the earlier visit whose preliminary progression this scan did not confirm: the growth
    # there was pseudoprogression (treatment effect)
    pseudoprogression_of = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    criteria = models.CharField(max_length=20, choices=Criteria.choices)
    timeline_input = models.JSONField(default=dict)
    model_versions = models.JSONField(default=list)
    is_current = models.BooleanField(default=True)
    assessed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["visit"], condition=Q(is_current=True), name="one_current_assessment"
            )
        ]
        ordering = ["-assessed_at"]

    def __str__(self) -> str:
        return f"{self.category} for visit {self.visit_id}"


class SegmentationVersion(models.Model):
    """A clinician's correction of a visit's segmentation (edited in the browser or uploaded):
    a new version, never overwriting one. Version 1 of a visit is the model's (its run, no row
    here); each correction is measured and assessed by a run of its own (``run``), which becomes
    the visit's current one when its numbers exist. ``parent_run`` is the run whose segmentation
    was corrected; ``changes`` what the correction did (volumes before and after, Dice)."""

    class Source(models.TextChoices):
        EDIT = "edit", "edited in the browser"
        UPLOAD = "upload", "uploaded label map"

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="segmentations")
    number = models.PositiveIntegerField()  # 2, 3, ... (1 is the model's)
    run = models.OneToOneField(AnalysisRun, on_delete=models.CASCADE, related_name="correction")
    parent_run = models.ForeignKey(AnalysisRun, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=10, choices=Source.choices)
    reason = models.TextField(max_length=TEXT_MAX)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    labels_sha256 = models.CharField(max_length=64)
    changes = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["visit", "number"], name="one_version_number"),
            models.CheckConstraint(condition=~Q(reason=""), name="correction_says_why"),
        ]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"segmentation version {self.number} of visit {self.visit_id}"


class ModelVersion(models.Model):
    """A segmentation model registered with the service (``manage.py register_model``): its
    weights copied under MEDIA_ROOT/models, its card, its evaluation against the clinicians'
    corrections it did not train on (``evaluate_model``), and whether an administrator has made
    it the one new analyses use (``activate_model``; at most one is active; with none active the
    shipped model, or ``TRACKER_WEIGHTS_DIR``, is used)."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    weights_sha256 = models.CharField(max_length=64)
    folder = models.CharField(max_length=300)  # media path of the weights folder
    card = models.JSONField(default=dict)
    registered_at = models.DateTimeField(auto_now_add=True)
    evaluation = models.JSONField(default=dict)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="one_model_version"),
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_model"
            ),
        ]
        ordering = ["-registered_at"]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Review(models.Model):
    """A person's confirmation or override of a visit's assessed category."""

    class Action(models.TextChoices):
        # "confirm" is the API's word; people read "agree": a RANO "confirmed" response is
        # another thing (a later scan confirming it).
        CONFIRM = "confirm", "agree"
        OVERRIDE = "override", "override"

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="reviews")
    assessment = models.ForeignKey(Assessment, on_delete=models.PROTECT, related_name="reviews")
    action = models.CharField(max_length=10, choices=Action.choices)
    category = models.CharField(max_length=20, choices=Category.choices, blank=True)
    reason = models.TextField(blank=True, max_length=TEXT_MAX)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    reviewed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(action="confirm") | (~Q(category="") & ~Q(reason="")),
                name="override_has_category_and_reason",
            )
        ]
        ordering = ["-reviewed_at"]

    def __str__(self) -> str:
        return f"{self.action} of visit {self.visit_id}"


class AuditEvent(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=50)  # read_patient, export_csv, upload_visit, ...
    patient = models.ForeignKey(Patient, null=True, on_delete=models.SET_NULL, related_name="+")
    object_code = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.action} at {self.at}"
