"""Fine-tune page: pick a question set and a base model, set the recipe, train in the background,
watch it live, stop or resume it, download the model and read its card.

Everything shown is read from the run folder, so a refresh or a closed tab loses nothing; session
state only remembers which model run is selected.
"""

from __future__ import annotations

import functools

import streamlit as st

from core.charts.training import loss_figure, ndcg_figure
from core.embeddings import ModelSpec, run_model_dir
from core.errors import ConfigError
from core.finetune.artifacts import last_checkpoint, model_zip_bytes, read_metrics, validation_table
from core.finetune.config import (
    DEVICES,
    LOSSES,
    PRECISIONS,
    SCHEDULERS,
    FinetuneConfig,
    check_config,
    default_dims,
    describe_base_model,
)
from core.finetune.control import resume_job, start_finetune, stop_finetune
from core.finetune.model_card import protocol_part, push_to_hub, read_model_card
from core.questions.sources import sources_text, structure_only_caution, training_items
from core.runs.folders import list_runs, load_run
from core.runs.jobs import JobStatus, job_status, stop_requested, tail_log
from core.text import demote_headings
from pages._rerank_ui import reranker_ui
from pages._ui import (
    act_for_session,
    audited,
    device_description,
    error_boundary,
    guard_page,
    locked,
    preselect,
    remember_run,
    resend_label,
    run_picker,
)

guard_page()  # team mode: nothing of this page before sign-in

RUN_KEY = "ft_run_id"
PENDING_RUN_KEY = "ft_run_pending"  # a run to select on the next rerun (set after the picker)
SOURCE_LABELS = {
    "default": "Default: all-MiniLM-L6-v2 (offline)",
    "local": "A local folder",
    "hub": "A Hugging Face hub id (needs a network)",
    "run": "An earlier fine-tuned model run",
}
LOSS_LABELS = {
    "mnrl": "MNRL (in-batch negatives)",
    "cached_mnrl": "Cached MNRL (big batches on small GPUs)",
}
# Streamlit's material icons (bundled with its frontend): an emoji renders as an empty box
# where no emoji font is installed.
STATUS_ICONS = {
    "running": ":material/hourglass_top:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "stopped": ":material/stop_circle:",
    "pending": ":material/schedule:",
}


@st.cache_data(show_spinner=False, ttl=30)
def train_pairs(qa_run_id: str, weights: dict[str, float], seed: int) -> dict[str, dict[str, int]]:
    """Train-split pairs per source, available and kept by the weights (the fine-tune's own
    selection, core.questions.sources.training_items)."""
    from core.questions.dataset import load_qa

    train = load_qa(qa_run_id, split="train")
    return training_items(train, {i.chunk_id for i in train}, weights, seed)[2]


def source_weights_ui(qa_run_id: str) -> dict[str, float]:
    """A weight per question source when the set mixes sources ({} when it has one)."""
    available = train_pairs(qa_run_id, {}, 42)
    if len(available) < 2:
        return {}
    st.caption(
        "This set mixes question sources. Weigh them: 0 leaves a source out, 0.5 keeps half its "
        "pairs (drawn with the seed), 2 uses each pair twice."
    )
    cols = st.columns(len(available))
    return {
        source: float(
            col.number_input(
                f"{source} ({counts['available']} pairs)",
                0.0,
                10.0,
                1.0,
                step=0.25,
                key=f"ft_weight_{source}",
            )
        )
        for col, (source, counts) in zip(cols, available.items(), strict=True)
    }


def parse_numbers(text: str, kind: type = int) -> list:
    """'384, 256 128' -> [384, 256, 128]; a ConfigError names the bad entry."""
    values = []
    for part in text.replace(",", " ").split():
        try:
            values.append(kind(part))
        except ValueError as exc:
            raise ConfigError(
                f"{part!r} is not a number.", fix="separate numbers by commas"
            ) from exc
    return values


def base_model_ui() -> ModelSpec | None:
    """Where the base model comes from; None until the choice is complete."""
    source = st.radio(
        "Base model",
        list(SOURCE_LABELS),
        format_func=SOURCE_LABELS.get,
        key="ft_model_source",
        horizontal=True,
    )
    if source == "local":
        ref = st.text_input(
            "Model folder", key="ft_model_local", placeholder="/models/bge-base-en-v1.5"
        )
        return ModelSpec("local", ref.strip()) if ref.strip() else None
    if source == "hub":
        ref = st.text_input("Hub id", key="ft_model_hub", placeholder="BAAI/bge-base-en-v1.5")
        return ModelSpec("hub", ref.strip()) if ref.strip() else None
    if source == "run":
        run_id = run_picker("model", "Model run", key="ft_model_run", statuses=("done", "stopped"))
        return ModelSpec("run", run_id) if run_id else None
    return ModelSpec()


def config_ui(qa_run_id: str, spec: ModelSpec, native: int | None) -> FinetuneConfig | None:
    """The recipe form; returns a validated config, or None (with the error shown)."""
    dims_default = ", ".join(str(d) for d in default_dims(native)) if native else ""
    with st.expander("Recipe", expanded=True):
        c1, c2 = st.columns(2)
        dims_text = c1.text_input(
            "Matryoshka dims (largest first)",
            dims_default,
            key=f"ft_dims_{native}",
            help="The model's native dimension first, then smaller ones. Empty: the default.",
        )
        weights_text = c2.text_input("Dim weights (empty = all 1)", "", key=f"ft_weights_{native}")
        c1, c2, c3 = st.columns(3)
        loss = c1.selectbox("Loss", LOSSES, format_func=LOSS_LABELS.get, key="ft_loss")
        mini_batch = c2.number_input(
            "Mini-batch (cached MNRL)",
            1,
            4096,
            32,
            key="ft_mini_batch",
            disabled=loss != "cached_mnrl",
        )
        hard_negatives = c3.checkbox(
            "Mine hard negatives",
            False,
            key="ft_hard_negatives",
            help="sentence-transformers' mine_hard_negatives over the corpus, without the validation and test chunks",
        )
        if hard_negatives:
            c1, c2, c3 = st.columns(3)
            num_negatives = c1.number_input(
                "Negatives per question", 1, 20, 1, key="ft_num_negatives"
            )
            range_min = c2.number_input("Skip the nearest", 0, 500, 2, key="ft_neg_range_min")
            range_max = c3.number_input("Search depth", 2, 2000, 30, key="ft_neg_range_max")
        else:
            num_negatives, range_min, range_max = 1, 2, 30
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs", 1, 100, 3, key="ft_epochs")
        batch_size = c2.number_input("Batch size", 2, 8192, 32, key="ft_batch_size")
        learning_rate = c3.number_input(
            "Learning rate", 1e-7, 1e-2, 2e-5, format="%.1e", step=1e-6, key="ft_lr"
        )
        warmup = c4.number_input("Warmup ratio", 0.0, 0.99, 0.1, step=0.05, key="ft_warmup")
        c1, c2, c3, c4 = st.columns(4)
        scheduler = c1.selectbox("Scheduler", SCHEDULERS, key="ft_scheduler")
        weight_decay = c2.number_input(
            "Weight decay", 0.0, 0.99, 0.01, step=0.01, key="ft_weight_decay"
        )
        max_len = c3.number_input(
            "Max sequence length (0 = model's)", 0, 8192, 0, step=32, key="ft_max_seq_length"
        )
        seed = c4.number_input("Seed", 0, 2**31 - 1, 42, key="ft_seed")
        c1, c2, c3 = st.columns(3)
        precision = c1.selectbox(
            "Precision",
            PRECISIONS,
            key="ft_precision",
            help="auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU; tf32 on Ampere+",
        )
        device = c2.selectbox("Device", DEVICES, key="ft_device")
        eval_each_epoch = c3.checkbox("Validate every epoch", True, key="ft_eval_each_epoch")
    try:
        return FinetuneConfig(
            qa_run_id=qa_run_id,
            base_model=spec,
            matryoshka_dims=tuple(parse_numbers(dims_text)),
            dim_weights=tuple(parse_numbers(weights_text, float)),
            loss=loss,
            mini_batch_size=int(mini_batch),
            hard_negatives=bool(hard_negatives),
            num_negatives=int(num_negatives),
            negatives_range_min=int(range_min),
            negatives_range_max=int(range_max),
            epochs=int(epochs),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            warmup_ratio=float(warmup),
            scheduler=scheduler,
            weight_decay=float(weight_decay),
            max_seq_length=int(max_len) or None,
            seed=int(seed),
            precision=precision,
            device=device,
            eval_each_epoch=bool(eval_each_epoch),
        )
    except ConfigError as exc:
        st.error(str(exc))
        return None


def new_finetune_ui() -> None:
    """Choose data, model and recipe; show the guard-rails; start the job."""
    st.subheader("New fine-tune")
    qa_run_id = run_picker("qa", "Question set", key="ft_qa")
    if not qa_run_id:
        st.info("Create a question set on the Questions page first.")
        return
    spec = base_model_ui()
    if spec is None:
        st.caption("Finish choosing the base model.")
        return
    info = describe_base_model(spec)
    known = (
        f"native dimension {info.native_dim}"
        if info.native_dim
        else "native dimension unknown until loaded"
    )
    prompt = f"query prompt {info.query_prompt!r}" if info.query_prompt else "no query prompt"
    st.caption(f"{spec.label}: {known}; {prompt}.")
    cfg = config_ui(qa_run_id, spec, info.native_dim)
    if cfg is None:
        return
    weights = source_weights_ui(qa_run_id)
    if weights:
        try:
            cfg = cfg.update(source_weights=weights)
        except ConfigError as exc:
            st.error(str(exc))
            return
    pairs = train_pairs(qa_run_id, cfg.source_weights, cfg.seed)
    n_train = sum(p["used"] for p in pairs.values())
    for warning in check_config(
        cfg, native_dim=info.native_dim, query_prompt=info.query_prompt, n_train=n_train
    ):
        st.warning(warning)
    st.caption(
        f"{sources_text(pairs) or '0 training pairs'} (anchor = question, positive = its chunk; "
        "a heading or cloze pair's chunk without its heading or sentence), NO_DUPLICATES "
        f"batches, validated against the whole corpus at every dim. Trains on "
        f"**{device_description()}**."
    )
    if structure_only_caution(pairs):
        st.info(structure_only_caution(pairs))
    busy = [r.id for r in list_runs("model") if r.manifest.status == "running"]
    if busy:
        st.warning(
            f"Fine-tune {busy[0]} is still running: a second job would share the device "
            "(and its memory)."
        )
    name = st.text_input("Run name (optional)", key="ft_name")
    if n_train == 0:
        st.error(
            "No training pairs: this question set has no accepted questions in its train split "
            "(or the source weights leave none). Pick another set or raise a weight."
        )
    if st.button(
        "Start fine-tune", type="primary", key="ft_start", disabled=locked("run") or n_train == 0
    ):
        with error_boundary("Start fine-tune"):
            run = start_finetune(cfg, name=name.strip())
            st.session_state[RUN_KEY] = run.id
            remember_run("qa", qa_run_id)  # the set and the model this session works on now
            remember_run("model", run.id)
            st.rerun()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def progress_ui(status: JobStatus, stopping: bool = False) -> None:
    """Figures and charts of a job, running or finished (a finished one names how it ended,
    not the phase it was last in)."""
    phase = status.status if status.finished else status.phase
    if status.total_steps:
        st.progress(
            status.fraction or 0.0, text=f"step {status.step}/{status.total_steps} · {phase}"
        )
    elif phase:
        st.caption(phase)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Epoch", f"{status.epoch:.2f}" if status.epoch is not None else "–")
    c2.metric("Steps/s", f"{status.steps_per_s:.2f}" if status.steps_per_s else "–")
    running = status.status == "running" and not stopping
    c3.metric("ETA", _duration(status.eta_s) if running else "–")
    c4.metric("GPU memory", f"{status.gpu_mem_gib:.1f} GiB" if status.gpu_mem_gib else "–")
    left, right = st.columns(2)
    left.plotly_chart(loss_figure(status), key="ft_fig_loss")
    right.plotly_chart(ndcg_figure(status), key="ft_fig_ndcg")
    for warning in status.warnings:
        st.warning(warning)


def stop_text(status: JobStatus) -> str:
    """What a requested stop will leave: a model at this step, or none before training starts."""
    if not status.step:
        return (
            "the job stops before training starts (validating the base model stops at its next "
            "batch) and saves no model."
        )
    return (
        "the job ends this step, saves the model and validates it at every dim; on a CPU that "
        "can take a minute."
    )


@st.fragment(run_every=2)
def live_ui(run_id: str) -> None:
    """Polls the run folder every 2 s while the job runs."""
    act_for_session()  # a fragment's rerun runs only this function: say who acts again
    status = job_status(run_id)
    if status.finished:
        st.rerun()  # the whole page, to show the finished view
    if stop_requested(load_run(run_id).path):
        st.markdown(
            f"{STATUS_ICONS['stopped']} **Stopping** (pid {status.pid}): {stop_text(status)}"
        )
        progress_ui(status, stopping=True)
        return
    st.markdown(f"{STATUS_ICONS['running']} **Training** (pid {status.pid})")
    progress_ui(status)
    if st.button(
        "Stop",
        key="ft_stop",
        help="Saves a checkpoint and the model at the current step",
        disabled=locked("stop"),
    ):
        stop_finetune(run_id)
        st.toast("Stop requested: the job saves the model after this step.")
        st.rerun(scope="fragment")  # say 'Stopping' now, not at the next poll


def finished_ui(run_id: str, status: JobStatus) -> None:
    """The outcome of a finished job: result, errors with hints, download, card, hub push."""
    if status.status == "failed":
        st.error(f"**Fine-tune failed.** {status.error}")
        if status.hint:
            st.info(f"Hint: {status.hint}")
        with st.expander("Last lines of job.log"):
            st.code(tail_log(run_id) or "(empty)", language="text")
    elif status.status == "stopped":
        st.warning(f"**Stopped.** {status.error}")
    else:
        st.success("**Done.** The tuned model is saved in the run folder.")
    run = load_run(run_id)
    if status.status in ("failed", "stopped") and last_checkpoint(run):
        st.caption(
            "Resuming continues from the last checkpoint in a new model run; this run keeps "
            "the weights saved at the stop, so evaluations of it stay true."
        )
        if st.button("Resume from the last checkpoint", key="ft_resume", disabled=locked("run")):
            with error_boundary("Resume"):
                new = resume_job(run_id)
                st.session_state[PENDING_RUN_KEY] = new.id
                st.rerun()
    if run.manifest.summary.get("resumed_as"):
        st.caption(f"Resumed as model run {run.manifest.summary['resumed_as']}.")
    metrics = read_metrics(run)
    if metrics and metrics.get("final"):
        data = metrics.get("data", {})
        st.caption(
            f"Validation: {data.get('n_validation')} questions against all {data.get('corpus_size')} "
            f"chunks. The test split is for the Retrieval eval page."
        )
        st.dataframe(validation_table(metrics), hide_index=True, key="ft_metrics_table")
    if status.events:
        progress_ui(status)
    if run_model_dir(run).is_dir():
        st.download_button(
            "Download the model (.zip)",
            data=audited(functools.partial(model_zip_bytes, run_id), [run_id], "model zip"),
            file_name=f"{run_id}.zip",
            mime="application/zip",
            key="ft_download",
        )
        card = read_model_card(run)
        if card:
            st.markdown("#### Model card: evaluation protocol")
            # The card's own headings sit under the page's: none drawn larger than this one.
            st.markdown(demote_headings(protocol_part(card), 5) or "(no protocol section)")
            with st.expander("Full model card (sentence-transformers' README.md + protocol)"):
                # As text: the card quotes training examples (document text) and carries HTML.
                st.code(card, language="markdown")
        hub_ui(run_id)


def hub_ui(run_id: str) -> None:
    """Optional push of the model folder to the Hugging Face Hub."""
    with st.expander("Push to the Hugging Face Hub (optional, needs a network)"):
        repo = st.text_input("Repo id", key="ft_hub_repo", placeholder="your-name/ragbench-minilm")
        token = st.text_input(
            "Write token (kept in memory only)", type="password", key="ft_hub_token"
        )
        private = st.checkbox("Private", True, key="ft_hub_private")
        if st.button("Push", key="ft_hub_push", disabled=locked("run") or not (repo and token)):
            with error_boundary("Push to the Hub"):
                url = push_to_hub(run_id, repo.strip(), token, private=private)
                st.success(f"Pushed: {url}")


def runs_ui() -> None:
    """Pick a model run (newest first) and show it: live while running, results when finished."""
    st.subheader("Model runs")
    runs = list_runs("model")
    if not runs:
        st.caption("No fine-tune runs yet.")
        return
    options = [r.id for r in runs]
    pending = st.session_state.pop(PENDING_RUN_KEY, None)
    if pending in options:
        st.session_state[RUN_KEY] = pending
        remember_run("model", pending)
    preselect("model", RUN_KEY, runs)  # the model this session works on, else the newest
    if st.session_state.get(RUN_KEY) not in options:
        st.session_state[RUN_KEY] = options[0]
    labels = {
        r.id: f"{r.manifest.name} · {r.manifest.status} · {r.manifest.created_at[:16]}"
        for r in runs
    }
    resend_label(RUN_KEY)  # the status in the label changes while the pick stays
    run_id = st.selectbox(
        "Model run",
        options,
        format_func=lambda rid: labels.get(rid, rid),
        key=RUN_KEY,
        on_change=lambda: remember_run("model", st.session_state.get(RUN_KEY)),
    )
    status = job_status(run_id)  # also marks a job whose process died as failed
    if status.status in ("running", "pending"):
        live_ui(run_id)
    else:
        finished_ui(run_id, status)


st.title("Fine-tune")
st.caption(
    "MatryoshkaLoss over MultipleNegativesRankingLoss with sentence-transformers' trainer. "
    "Training runs as a background job: refresh or close the tab freely."
)
with error_boundary("Fine-tune setup"):
    new_finetune_ui()
st.divider()
with error_boundary("Model runs"):
    runs_ui()
st.divider()
with error_boundary("Reranker"):
    reranker_ui()
