"""The policy: verdict + confidence + deadline -> PASS / REJECT / NO-READ, with a reason."""

from edge_inspector.policy.policy import FailsafeConfig, Policy, PolicyConfig

__all__ = ["FailsafeConfig", "Policy", "PolicyConfig"]
