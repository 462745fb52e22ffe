"""Scale-out: transcribe thousands of files on a Ray cluster with Ray Data (`whisper-eas transcribe-dataset`).

Ray is optional (`pip install 'whisper-eas[ray]'`) and imported only when a job runs.
"""

from whisper_eas.scaleout.job import ClusterSpec, DatasetItem, JobError, JobReport, require_ray, run_job
from whisper_eas.scaleout.stages import TranscribeSpec

__all__ = ["ClusterSpec", "DatasetItem", "JobError", "JobReport", "TranscribeSpec", "require_ray", "run_job"]
