"""The command line: a thin layer over build, recalc, verify, generate and tokenize."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .errors import Interrupted, XlgptError
from .xlsx.reader import XlsxError

ENGINE_HELP = "ironcalc (default), libreoffice, gnumeric (up to ~40M cells) or formulas (pure Python, up to ~2M cells)"


def _snapshot_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-snapshot", action="store_true",
                   help="IronCalc: neither reuse nor save the snapshot that makes reloading a big workbook fast")


def _parser() -> argparse.ArgumentParser:
    from .engines import DEFAULT_ENGINE, ENGINES
    from .model import DEFAULT_MODEL

    p = argparse.ArgumentParser(prog="xlgpt", description="Write a working GPT-2 as an Excel workbook and check it.")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="write the workbook")
    b.add_argument("--model", default=None, help=f"toy (default: {DEFAULT_MODEL}), tiny[:opts], random:gpt2, a folder, or a hub id like gpt2")
    b.add_argument("--prompt", default=None, help="the prompt (stored as text)")
    b.add_argument("--context", type=int, default=None, help="token rows in the workbook (default 16, more if the prompt needs them)")
    b.add_argument("--out", default=None, help="output .xlsx (default out/<model>.xlsx)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--no-cached-values", action="store_true",
                   help="store formulas without their computed values (readers that do not recalculate show blanks)")
    b.add_argument("--python-tokenizer", action="store_true",
                   help="write Python's token ids as input cells instead of tokenizing in the sheet")
    b.add_argument("--max-chars", type=int, default=0, help="longest prompt the sheet tokenizes (default 8 x context)")
    b.add_argument("--max-word-bytes", type=int, default=128, help="longest pre-token in UTF-8 bytes (default 128)")
    b.add_argument("--bos", action="store_true", help="prepend <|endoftext|> (as TransformerLens and SAELens do)")
    b.add_argument("--show-top", type=int, default=10, help="how many of the most likely tokens the prediction tab lists")
    b.add_argument("--temperature", type=float, default=0.0, help="initial temperature cell (0 = argmax)")
    b.add_argument("--top-k", type=int, default=0, help="initial sampling top-k cell (0 = all tokens)")
    b.add_argument("--seed", type=float, default=None, help="pin the uniform draw cell to this value in [0, 1)")
    b.add_argument("--steer-layer", type=int, default=None, help="block whose input the steering vector is added to")
    b.add_argument("--steer-coef", type=float, default=None, help="steering coefficient")
    b.add_argument("--steer-positions", type=int, default=0, help="steer only the first P positions (0 = all)")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--steer-vector", metavar="FILE.npy", help="a 1-D .npy vector of n_embd values")
    src.add_argument("--steer-diff", nargs=2, metavar=("PLUS", "MINUS"),
                     help="activation steering: resid_pre(PLUS) - resid_pre(MINUS) at --steer-layer")
    src.add_argument("--steer-sae", metavar="RELEASE:LAYER:FEATURE",
                     help="a sparse-autoencoder decoder row, e.g. gpt2-small-res-jb:2:7650 or a local folder:2:7650")
    b.add_argument("--steer-mean", action="store_true", help="with --steer-diff: mean over positions instead of the last")

    r = sub.add_parser("recalc", help="recalculate headlessly and print the predicted token")
    r.add_argument("path")
    r.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    r.add_argument("--prompt", default=None, help="type this prompt into the sheet first (the sheet tokenizes it)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    _snapshot_flag(r)

    v = sub.add_parser("verify", help="recalculate and compare every stage with the NumPy reference")
    v.add_argument("path")
    v.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    v.add_argument("--prompt", default=None, help="type this prompt into the sheet first")
    _snapshot_flag(v)

    g = sub.add_parser("generate", help="generate tokens by re-evaluating the workbook")
    g.add_argument("path")
    g.add_argument("--tokens", type=int, default=8, help="how many tokens to generate")
    g.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=None, help="seed of the random draws (a whole number >= 0)")
    _snapshot_flag(g)

    t = sub.add_parser("tokenize", help="show how the Python reference tokenizer splits a text")
    t.add_argument("text")
    t.add_argument("--model", default=None)
    return p


def _steering(args, model_spec):
    from .stages import Steering

    chosen = args.steer_vector or args.steer_diff or args.steer_sae
    if not chosen:
        if args.steer_layer is not None or args.steer_coef is not None:
            raise XlgptError("--steer-layer/--steer-coef need a vector: --steer-vector, --steer-diff or --steer-sae")
        return Steering()
    from .steering import steering_from_args

    return steering_from_args(args, model_spec)


def _build_options(args):
    from .build import DEFAULT_CONTEXT
    from .stages import BuildOptions, Steering

    opts = BuildOptions(context=DEFAULT_CONTEXT if args.context is None else args.context,
                        fit_context=args.context is None, live_tokenizer=not args.python_tokenizer,
                        cached_values=not args.no_cached_values,
                        max_chars=args.max_chars, max_word_bytes=args.max_word_bytes, bos=args.bos,
                        top_k=args.show_top, temperature=args.temperature, sample_top_k=args.top_k, seed=args.seed,
                        steer=Steering(positions=args.steer_positions))
    if args.prompt is not None:
        opts.prompt = args.prompt
    return opts


def check_args(args) -> None:
    """Every command's options, checked in one place before anything is loaded (the rules: stages/options.py;
    build checks what depends on the model again once it is loaded)."""
    from .stages import options as rules

    if args.cmd == "build":
        rules.check_options(_build_options(args))
        if args.steer_coef is not None and not -rules.STEER_MAX <= args.steer_coef <= rules.STEER_MAX:
            raise XlgptError(f"--steer-coef must be a finite number of at most {rules.STEER_MAX:g} in size, "
                             f"not {args.steer_coef:g}")
    elif args.cmd in ("recalc", "verify"):
        if args.prompt is not None:
            rules.check_text(args.prompt, stored=False)  # typed into the engine, not into XML
    elif args.cmd == "generate":
        if args.tokens < 0:
            raise XlgptError(f"--tokens must be a whole number of at least 0, not {args.tokens}")
        rules.check_sampling(args.temperature, args.top_k)
        rules.check_rng_seed(args.seed)
    elif args.cmd == "tokenize":
        rules.check_text(args.text, what="the text", stored=False)
    if getattr(args, "path", None) is not None and not str(args.path).strip():
        raise XlgptError("the workbook path is empty")


def cmd_build(args) -> int:
    from .build import build

    opts = _build_options(args)
    opts.steer = _steering(args, args.model)
    from .xlsx.writer import progress_bar

    with progress_bar(quiet=args.quiet) as bar:
        build(args.model, opts, args.out, progress=bar)
    return 0


def cmd_recalc(args) -> int:
    from .recalc import recalc

    result = recalc(args.path, args.engine, args.prompt, snapshot=not args.no_snapshot)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif result["status"]:
        print(f"the workbook reports: {result['status']}")
    else:
        sampled = "" if result.get("sampled_token_id", result["next_token_id"]) == result["next_token_id"] else \
            f"; sampled {result['sampled_token']!r} (id {result['sampled_token_id']})"
        print(f"{args.engine}: next token {result['next_token']!r} (id {result['next_token_id']}, "
              f"p = {result['top'][0]['prob']:.4f}) after {len(result['token_ids'])} tokens{sampled}")
    return 1 if result["status"] else 0


def cmd_verify(args) -> int:
    from .verify import report, verify

    text, ok = report(verify(args.path, args.engine, args.prompt, snapshot=not args.no_snapshot))
    print(text)
    return 0 if ok else 1


def cmd_generate(args) -> int:
    from .generate import generate

    generate(args.path, args.tokens, engine=args.engine, temperature=args.temperature, top_k=args.top_k,
             seed=args.seed, snapshot=not args.no_snapshot)
    return 0


def cmd_tokenize(args) -> int:
    from .model import load_model

    tok = load_model(args.model).tokenizer
    ids = tok.encode(args.text)
    print(json.dumps(ids))
    print(" | ".join(repr(tok.token_text(i)) for i in ids))
    return 0


COMMANDS = {"build": cmd_build, "recalc": cmd_recalc, "verify": cmd_verify, "generate": cmd_generate,
            "tokenize": cmd_tokenize}


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _on_signal(signum, frame) -> None:
    """The first stop signal raises Interrupted in the main thread (cleanups run as for Ctrl-C); later ones
    are ignored so that a second Ctrl-C cannot interrupt the cleanup itself."""
    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    saved = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:  # pragma: no cover - SIGHUP on Windows
            continue
        try:
            saved[sig] = signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread (main() called from a thread): leave them
            pass
    return saved


def _quiet_stdout() -> None:
    """stdout was closed by its reader: drop what is still buffered instead of failing again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path or text with undecodable bytes still prints
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    args = _parser().parse_args(argv)
    saved = _install_signal_handlers()
    try:
        check_args(args)
        code = COMMANDS[args.cmd](args)
        sys.stdout.flush()  # a closed pipe fails here, where it is handled, not at exit
        return code
    except (XlgptError, XlsxError) as e:  # the user's input, or a file that is not what it claims
        print(f"xlgpt: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP as Interrupted
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(f"xlgpt: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + int(signum)
    except BrokenPipeError:
        _quiet_stdout()
        print("xlgpt: error: the output was closed before xlgpt finished writing it (broken pipe)", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line unless asked for the traceback
        if os.environ.get("XLGPT_DEBUG"):
            raise
        print(f"xlgpt: internal error: {type(e).__name__}: {e} (set XLGPT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    finally:
        for sig, handler in saved.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, TypeError):
                pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
