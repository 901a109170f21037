"""Recipe 9: the hosted service's cookbook "Async Evaluations for Large-Scale Testing", as is.

Its five steps and its error-handling pattern, as published, with one change: the import says
`fi_evals` instead of `fi.evals`. The standalone `evaluate()`, `Evaluator(fi_api_key=...,
fi_secret_key=...)`, `is_async=True` with `result.eval_results[0].eval_id`, polling
`get_eval_result(eval_id)` for `inner.get("evalStatus") == "completed"`, and the thread pools
all work unchanged; one extra call shows an ungrounded answer failing (`Passed: False`).

With FI_BASE_URL set (with FI_API_KEY, FI_SECRET_KEY) it runs there, the hosted API included.
Otherwise it starts a local reference server and exports its address and keys for the code
below. Its judge comes from FI_JUDGE_BASE_URL, FI_JUDGE_MODEL (and FI_JUDGE_API_KEY), any
OpenAI-compatible endpoint: it serves the cookbook's `turing_small` as its configured model.
Without a judge, groundedness is not available: the offline models have no trustworthy
groundedness (see docs/models.md).
"""

import atexit
import contextlib
import os

from _local import local_server


def serve_locally() -> None:
    """Unless FI_BASE_URL is set: a local server for this run, its address and keys exported."""
    if os.environ.get("FI_BASE_URL"):
        return
    stack = contextlib.ExitStack()
    server = stack.enter_context(local_server(
        judge_url=os.environ.get("FI_JUDGE_BASE_URL"),
        judge_model=os.environ.get("FI_JUDGE_MODEL"),
        judge_api_key=os.environ.get("FI_JUDGE_API_KEY")))
    atexit.register(stack.close)
    os.environ.update(FI_BASE_URL=server.url, FI_API_KEY=server.api_key,
                      FI_SECRET_KEY=server.secret_key)


serve_locally()

# --- 1. Run a synchronous eval as a baseline ---------------------------------------------

from fi_evals import evaluate  # hosted: from fi.evals import evaluate

result = evaluate(
    "groundedness",
    output="The Eiffel Tower is in Paris, France.",
    context="The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    model="turing_small",
)

print(f"Score: {result.score}  Passed: {result.passed}")
print(f"Reason: {result.reason}")

# Not in the hosted cookbook: an answer the context does not support fails.
result = evaluate(
    "groundedness",
    output="The Eiffel Tower is in Rome, Italy.",
    context="The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    model="turing_small",
)

print(f"Score: {result.score}  Passed: {result.passed}")
print(f"Reason: {result.reason}")

# --- 2. Submit an async evaluation (fire and forget) -------------------------------------

import os  # noqa: F811

from fi_evals import Evaluator

evaluator = Evaluator(
    fi_api_key=os.environ["FI_API_KEY"],
    fi_secret_key=os.environ["FI_SECRET_KEY"],
)

result = evaluator.evaluate(
    eval_templates="groundedness",
    inputs={
        "output": "The Eiffel Tower is in Paris, France.",
        "context": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    },
    model_name="turing_small",
    is_async=True,
)

# Extract the eval_id for polling
eval_id = result.eval_results[0].eval_id
print(f"Submitted async eval (eval_id: {eval_id})")

# --- 3. Poll for results with get_eval_result() ------------------------------------------

import time

# Poll until the result is ready
for attempt in range(15):
    poll_result = evaluator.get_eval_result(eval_id)
    inner = poll_result.get("result", {})

    if isinstance(inner, dict) and inner.get("evalStatus") == "completed":
        eval_data = inner["result"]
        print(f"\n✅ Evaluation complete!")  # noqa: F541
        print(f"  Metric:  {eval_data['name']}")
        print(f"  Value:   {eval_data['value']}")
        print(f"  Runtime: {eval_data['runtime'] / 1000:.1f}s")
        print(f"  Reason:  {eval_data['reason'][:120]}...")
        break

    print(f"  ⏳ Attempt {attempt + 1}/15: still processing...")
    time.sleep(5)
else:
    print("❌ Timed out waiting for result")

# --- 4. Evaluate 50+ items in parallel ---------------------------------------------------

import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from fi_evals import Evaluator

evaluator = Evaluator(
    fi_api_key=os.environ["FI_API_KEY"],
    fi_secret_key=os.environ["FI_SECRET_KEY"],
)

# Sample dataset — 50 items
test_cases = [
    {
        "output": f"Response {i}: The capital of France is Paris.",
        "context": "Paris is the capital and most populous city of France.",
        "input": f"Question {i}: What is the capital of France?",
    }
    for i in range(50)
]


def evaluate_one(index, test_case):
    """Evaluate a single test case and return the index + result."""
    result = evaluator.evaluate(
        eval_templates="groundedness",
        inputs=test_case,
        model_name="turing_small",
    )
    return index, result


# Run evaluations in parallel
results = [None] * len(test_cases)
completed = 0
start = time.time()

with ThreadPoolExecutor(max_workers=8) as executor:
    futures = {
        executor.submit(evaluate_one, i, tc): i
        for i, tc in enumerate(test_cases)
    }

    for future in as_completed(futures):
        idx, result = future.result()
        results[idx] = result
        completed += 1
        if completed % 10 == 0:
            elapsed = time.time() - start
            print(f"Progress: {completed}/{len(test_cases)} ({elapsed:.1f}s)")

elapsed = time.time() - start
print(f"\nDone: {len(test_cases)} evaluations in {elapsed:.1f}s")

# Summarize results
scored = sum(
    1 for r in results
    if r and r.eval_results and r.eval_results[0].output is not None
)
print(f"Scored: {scored}/{len(test_cases)}")

# Print a sample result
sample = results[0].eval_results[0]
print(f"Sample (name: {sample.name}, output: {sample.output}, reason: {sample.reason})")

# --- 5. Parallel async submissions with batch polling ------------------------------------

import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from fi_evals import Evaluator

evaluator = Evaluator(
    fi_api_key=os.environ["FI_API_KEY"],
    fi_secret_key=os.environ["FI_SECRET_KEY"],
)

test_cases = [
    {
        "output": f"Response {i}: Python is a programming language.",
        "context": "Python is a high-level, general-purpose programming language.",
    }
    for i in range(50)
]


# Phase 1: Submit all evaluations asynchronously
def submit_async(index, test_case):
    result = evaluator.evaluate(
        eval_templates="groundedness",
        inputs=test_case,
        model_name="turing_small",
        is_async=True,
    )
    eval_id = result.eval_results[0].eval_id
    return index, eval_id


eval_ids = {}
with ThreadPoolExecutor(max_workers=8) as executor:
    futures = {
        executor.submit(submit_async, i, tc): i
        for i, tc in enumerate(test_cases)
    }
    for future in as_completed(futures):
        idx, eval_id = future.result()
        eval_ids[idx] = eval_id

print(f"Submitted {len(eval_ids)} async evaluations")

# Phase 2: Poll for results until all complete
results = {}
max_polls = 15

for poll_round in range(max_polls):
    still_pending = {
        idx: eid for idx, eid in eval_ids.items() if idx not in results
    }
    if not still_pending:
        break

    for idx, eid in still_pending.items():
        poll_result = evaluator.get_eval_result(eid)
        inner = poll_result.get("result", {})
        if isinstance(inner, dict) and inner.get("evalStatus") == "completed":
            results[idx] = poll_result

    print(f"  🔄 Poll {poll_round + 1}: {len(results)}/{len(eval_ids)} completed")
    if len(results) < len(eval_ids):
        time.sleep(3)

print(f"\n✅ All {len(results)} evaluations complete!")

# Print first few results
for idx in sorted(results)[:3]:
    eval_data = results[idx]["result"]["result"]
    print(f"  Item {idx}: {eval_data['name']} = {eval_data['value']}")

# --- Error handling pattern ----------------------------------------------------------------

from concurrent.futures import ThreadPoolExecutor, as_completed

results = {}
errors = {}

with ThreadPoolExecutor(max_workers=8) as executor:
    futures = {
        executor.submit(evaluate_one, i, tc): i
        for i, tc in enumerate(test_cases)
    }

    for future in as_completed(futures):
        idx = futures[future]
        try:
            _, result = future.result(timeout=60)
            results[idx] = result
        except Exception as exc:  # noqa: BLE001
            errors[idx] = str(exc)
            print(f"Item {idx} failed: {exc}")

print(f"Succeeded: {len(results)}, Failed: {len(errors)}")
