"""`python -m benchmarks [store] [peer] [rebuild] [checkin] [e2e] [--profile]` (``make bench``: all sections).

Writes var/bench/report.md and report.json (or `<stem>.md/.json`), prints the markdown.
``--variant NAME=VAR=value ...`` (repeatable) measures nocontact once per variant in the
check-in comparison, each suite started with those extra environment variables, e.g.
``python -m benchmarks checkin --variant plain= --variant sealed='NOCONTACT_SOME_FEATURE=on'``:
the report gives each variant's ratio to the first (a feature's cost) and to the CRUD peer.
``--profile`` also records pyinstrument profiles of the append path and of the rebuild
path (var/bench/profile-*.txt and .html), outside the timed runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from benchmarks import BENCH_DIR, Settings, Variant, fresh_store, load_average, machine_info
from benchmarks.report import Report, Section, render_markdown, write

SECTIONS: dict[str, str] = {
    "store": "benchmarks.store",
    "peer": "benchmarks.peer",
    "rebuild": "benchmarks.rebuild",
    "checkin": "benchmarks.checkin",
    "e2e": "benchmarks.e2e",
}


def _section_builder(key: str) -> Callable[[Settings], Section]:
    import importlib

    return importlib.import_module(SECTIONS[key]).section  # type: ignore[no-any-return]


def run_sections(keys: Sequence[str], *, stem: str = "report", output: Path = BENCH_DIR,
                 variants: Sequence[Variant] = ()) -> Report:
    settings = replace(Settings.from_environment(), variants=tuple(variants))
    report = Report(machine=machine_info(), config=settings.as_dict())
    started = time.perf_counter()
    for key in keys:
        print(f"[bench] {key} ... (load average {load_average()})", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        report.sections.append(_section_builder(key)(settings))
        print(f"[bench] {key} done in {time.perf_counter() - section_started:.0f} s", file=sys.stderr, flush=True)
    report.machine["load average at end (1/5/15 min)"] = load_average()
    report.config["wall time"] = f"{time.perf_counter() - started:.0f} s"
    markdown, document = write(report, output, stem)
    print(render_markdown(report))
    print(f"[bench] wrote {markdown} and {document}", file=sys.stderr)
    return report


def profile(settings: Settings, output: Path = BENCH_DIR) -> list[Path]:
    """Profiles of the two hot paths, on PostgreSQL, for reading rather than for figures."""
    from pyinstrument import Profiler

    from benchmarks import rebuild, store
    from shared.db import engine_for

    written: list[Path] = []

    def save(profiler: Profiler, name: str) -> None:
        text_path = output / f"profile-{name}.txt"
        text_path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        html_path = output / f"profile-{name}.html"
        html_path.write_text(profiler.output_html())
        written.extend([text_path, html_path])

    output.mkdir(parents=True, exist_ok=True)
    for name, plan in (
        ("append-1-event", lambda: store.single_event_jobs(settings.size(store.SINGLE_EVENTS, 4), 1)),
        ("append-100-events", lambda: store.batch_jobs(settings.size(store.BATCHED_EVENTS, store.BATCH), 1)),
    ):
        plans = plan()
        with fresh_store("postgres") as url:
            write_job = store.our_writer(engine_for(url))
            profiler = Profiler(interval=0.0005)
            with profiler:
                for job in plans[0]:
                    write_job(job)
            save(profiler, name)
    commitments = settings.size(rebuild.COMMITMENTS)
    with fresh_store("postgres") as url:
        rebuild.generate(engine_for(url), commitments)
        profiler = Profiler(interval=0.0005)
        with profiler:
            rebuild.run_once("read + fold", url, commitments)
        save(profiler, "rebuild")
    profiler = Profiler(interval=0.0005)
    with profiler:
        rebuild.run_once("fold in memory", None, commitments)
    save(profiler, "fold")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="section", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--profile", action="store_true", help="also profile the append and rebuild paths")
    parser.add_argument("--profile-only", action="store_true", help="only profile, no figures")
    parser.add_argument("--stem", default="report", help="report file names (default: report)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VAR=value ...",
                        help="check-in comparison: measure nocontact with these environment variables (repeatable)")
    args = parser.parse_args(argv)
    unknown = [key for key in args.sections if key not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    try:
        variants = [Variant.parse(text) for text in args.variant]
    except ValueError as error:
        parser.error(str(error))
    names = [variant.name for variant in variants]
    from benchmarks.checkin import PEER

    if len(set(names)) != len(names) or PEER in names:
        parser.error(f"variant names must be distinct (and not {PEER!r})")
    settings = Settings.from_environment()
    if not args.profile_only:
        run_sections(args.sections or list(SECTIONS), stem=args.stem, variants=variants)
    if args.profile or args.profile_only:
        for path in profile(settings):
            print(f"[bench] profile: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
