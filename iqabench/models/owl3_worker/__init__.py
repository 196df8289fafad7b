"""mPLUG-Owl3 in a process of its own.

Its official code needs transformers 4.37-4.41 and remote code, which cannot share a process
with this project's transformers 5.x. `worker.py` runs in a separate virtualenv (see
README.md and requirements.txt here) and talks JSON lines over stdin/stdout; `client.py` is
the harness side, an MLLMBackend (arch "owl3-worker"). The worker can host any iqabench
backend too (`host="iqabench:<arch>"`), which is how the transport is tested on a tiny model.
"""
