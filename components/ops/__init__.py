"""Scheduled operation of one method on a growing stream: durable state, promotion rule,
drift trigger. No orchestration or tracking here (flows/ops.py and tasks/ops.py)."""
