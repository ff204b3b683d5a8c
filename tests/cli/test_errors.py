from rich.console import Console

from imagefunnel.cli.errors import one_line, print_error


def test_an_error_is_printed_verbatim_on_one_line() -> None:
    console = Console(record=True, width=40, force_terminal=False)
    message = (
        "spec.yaml:3:9: prompts: expected ',' or ']', but got ':' [here]\n  and a second line " + "x" * 60
    )
    print_error(console, message)
    text = console.export_text()
    assert text.count("\n") == 1
    assert "[here]" in text and "but got ':'" in text
    assert text.startswith("error: spec.yaml:3:9: prompts:")


def test_one_line_folds_blank_and_indented_lines() -> None:
    assert one_line("a\n\n   b\n") == "a b"
