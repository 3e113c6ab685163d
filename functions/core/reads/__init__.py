"""One module per AWS read that detectors, guardrails, actions and Verify share: each takes the
caller's client (core.aws.client: a detector's retries the SDK way, a task's makes one attempt),
follows every page and classifies every error through core.aws.call. Light on purpose: nothing
here imports more than core.aws and core.errors, so any handler may use them."""
