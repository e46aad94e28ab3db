"""Summary latency of llama.cpp (PyPI `llama-cpp-python`) on the prompt candle was timed on.

Used by `warden bench summary --compare-llama-cpp`, which embeds this file and runs it as

    python3 llama_cpp_summary.py --model FILE.gguf --prompt-file PROMPT.txt --tokens N \
        --threads 2 [--add-bos] [--ignore-eos] [--eval-last] \
        [--repeat-penalty 1.1] [--repeat-last-n 64] [--runs 3] [--warmup 1]

The prompt file holds the *rendered* prompt text that candle used, chat template included and
without the BOS token; it is tokenized here by llama.cpp with special tokens parsed, and
`--add-bos` prepends BOS when candle did. Generation mirrors warden's runtime step by step:

* prefill = evaluating the prompt in one call (batches of up to 2048 tokens, llama.cpp's CLI
  default) plus choosing the first token;
* decode = appending tokens until N are generated, one `llama_decode` of the previous token per
  step after the first; with `--eval-last` the last token is evaluated too (warden does that
  when it then reads an end-of-turn token), so both sides run the same number of forward passes;
* tokens are chosen greedily (arg-max of the logits, i.e. temperature 0 / top-k 1) after the
  same repeat penalty as warden (CTRL-style, over the last `--repeat-last-n` *generated*
  tokens only);
* generation stops at an end-of-generation token (`llama_vocab_is_eog`) unless `--ignore-eos`,
  which the caller passes together with candle's own token count so that both sides generate
  exactly the same number of tokens. `eog_at` reports where llama.cpp would have stopped.

One warm-up run, then `--runs` timed runs; the medians are reported. Prints one JSON object:

    {"load_s", "prompt_tokens", "prefill_s", "prefill_tok_s", "decode_tokens", "decode_s",
     "decode_tok_s", "total_s", "cpu_s", "peak_rss_mb", "ru_maxrss_mb", "rss_after_load_mb",
     "llama_cpp_version", "ggml_version", "system_info", "threads", "runs": [...], "text",
     "eog_at", "stop"}

Times are wall-clock (`time.perf_counter`); `cpu_s` is the process's CPU time of a run
(`time.process_time`, all threads; OpenMP's spinning threads count), which shows whether the
run had its cores. `peak_rss_mb` is `VmHWM` of `/proc/self/status` (the Python interpreter and
numpy included; the model file is memory-mapped, so its pages count once touched), the same
figure warden reports for itself. `ru_maxrss_mb` (`resource.getrusage`) is given too but is
*not* this process's peak when it was started by a large process: Linux carries the parent's
high-water mark across fork and exec into it. Exit status 3 when `llama_cpp` cannot be
imported, 2 for bad arguments.
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time


def rss_mb(field: str) -> float | None:
    """A `/proc/self/status` memory field (`VmRSS`, `VmHWM`) in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def ggml_version(llama_cpp) -> str | None:
    """The version and commit of the ggml library inside the wheel, when it exports them."""
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml.so"):
        path = os.path.join(libdir, name)
        if not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
            out = []
            for fn_name in ("ggml_version", "ggml_commit"):
                fn = getattr(lib, fn_name)
                fn.restype = ctypes.c_char_p
                out.append(fn().decode())
            return " ".join(out)
        except (OSError, AttributeError):
            continue
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--prompt-file", required=True)
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--add-bos", action="store_true")
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--eval-last", action="store_true")
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--repeat-last-n", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    if args.tokens < 1 or args.threads < 1 or args.runs < 1 or args.warmup < 0:
        print("--tokens, --threads and --runs must be positive", file=sys.stderr)
        return 2

    try:
        import llama_cpp
        from llama_cpp import Llama
        import numpy as np  # a dependency of llama-cpp-python
    except ImportError as e:
        print(f"cannot import llama_cpp: {e}", file=sys.stderr)
        return 3

    with open(args.prompt_file, encoding="utf-8") as f:
        prompt = f.read()

    started = time.perf_counter()
    llm = Llama(
        model_path=args.model,
        n_ctx=4096,
        n_batch=2048,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - started
    rss_after_load = rss_mb("VmRSS")

    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=args.add_bos, special=True)
    n_ctx = llm.n_ctx()
    if len(ids) + args.tokens + 1 > n_ctx:
        print(f"the prompt has {len(ids)} tokens: too long for {n_ctx}", file=sys.stderr)
        return 2
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()

    def next_token(generated: list[int]) -> int:
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)
        ).copy()
        if args.repeat_penalty != 1.0 and generated:
            recent = np.unique(np.array(generated[-args.repeat_last_n :], dtype=np.int64))
            v = logits[recent]
            logits[recent] = np.where(v < 0, v * args.repeat_penalty, v / args.repeat_penalty)
        return int(np.argmax(logits))

    def run_once() -> dict:
        llm.reset()
        c0 = time.process_time()
        t0 = time.perf_counter()
        llm.eval(ids)
        nxt = next_token([])
        t1 = time.perf_counter()
        generated: list[int] = []
        eog_at = None
        stop = "max_tokens"
        while True:
            if llama_cpp.llama_vocab_is_eog(vocab, nxt):
                if eog_at is None:
                    eog_at = len(generated)
                if not args.ignore_eos:
                    stop = "end_of_turn"
                    break
            generated.append(nxt)
            if len(generated) >= args.tokens:
                if args.eval_last:
                    llm.eval([nxt])
                    next_token(generated)
                break
            llm.eval([nxt])
            nxt = next_token(generated)
        t2 = time.perf_counter()
        return {
            "prefill_s": t1 - t0,
            "decode_s": t2 - t1,
            "total_s": t2 - t0,
            "cpu_s": time.process_time() - c0,
            "decode_tokens": len(generated),
            "eog_at": eog_at,
            "stop": stop,
            "generated": generated,
        }

    for _ in range(args.warmup):
        run_once()
    runs = [run_once() for _ in range(args.runs)]
    last = runs[-1]
    prefill_s = statistics.median(r["prefill_s"] for r in runs)
    decode_s = statistics.median(r["decode_s"] for r in runs)
    total_s = statistics.median(r["total_s"] for r in runs)
    cpu_s = statistics.median(r["cpu_s"] for r in runs)
    decode_tokens = last["decode_tokens"]
    text = llm.detokenize(last["generated"]).decode("utf-8", errors="replace")
    try:
        from importlib.metadata import version

        package_version = version("llama_cpp_python")
    except Exception:  # informative only
        package_version = getattr(llama_cpp, "__version__", "unknown")
    print(
        json.dumps(
            {
                "load_s": load_s,
                "prompt_tokens": len(ids),
                "prefill_s": prefill_s,
                "prefill_tok_s": len(ids) / prefill_s if prefill_s > 0 else None,
                "decode_tokens": decode_tokens,
                "decode_s": decode_s,
                "decode_tok_s": decode_tokens / decode_s if decode_s > 0 else None,
                "total_s": total_s,
                "cpu_s": cpu_s,
                "peak_rss_mb": rss_mb("VmHWM"),
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "rss_after_load_mb": rss_after_load,
                "llama_cpp_version": package_version,
                "ggml_version": ggml_version(llama_cpp),
                "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
                "threads": args.threads,
                "runs": [{k: v for k, v in r.items() if k != "generated"} for r in runs],
                "text": text,
                "eog_at": last["eog_at"],
                "stop": last["stop"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
