"""Persistence: jobs, ledger, candidates and scores in SQL; image bytes in a blob store."""

from imagefunnel.store.blobs import BlobStore
from imagefunnel.store.repository import CandidateRecord, InFlight, JobProgress, ScoreRecord, Store

__all__ = ["BlobStore", "CandidateRecord", "InFlight", "JobProgress", "ScoreRecord", "Store"]
