"""``xhub validate`` output and exit codes (0 all valid, 1 invalid or not checked, 2 usage or unreadable)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hub.validation.cli import main_app

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "xoev"
runner = CliRunner()


def _run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(main_app, ["validate", "--schema-dir", str(tmp_path / "none"), *args])
    return result.exit_code, result.stdout, result.stderr


def test_folder_of_valid_documents_exits_0(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, str(FIX / "xgewerbesteuer-1.4"))
    assert code == 0
    assert out.count(": valid | XGewerbesteuer 1.4") == 15


def test_text_output_has_indented_findings(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, str(FIX / "xdomea-3.0.0" / "toolkit_xx_Aussonderung.Aussonderung.0503.xml"))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith(
        "invalid | xdomea 3.0.0 Aussonderung.Aussonderung.0503 | code '002' is not in code "
        "list urn:de:xoev:codeliste:erreichbarkeit version 3 (erreichbarkeit)"
    )
    assert lines[1].startswith("    error: code '002'")
    assert "(line 65 /xdomea:Aussonderung.Aussonderung.0503/" in lines[1]
    assert lines[1].endswith("[urn:de:xoev:codeliste:erreichbarkeit_3])")


def test_json_output_and_not_checked_exits_1(tmp_path: Path) -> None:
    code, out, _ = _run(
        tmp_path,
        "--format",
        "json",
        str(FIX / "xgewerbeanzeige" / "xgwa2.0-valid.xml"),
        str(FIX / "xgewerbesteuer-1.4"),
    )
    assert code == 1
    data = json.loads(out)
    assert len(data) == 16
    first = data[0]
    assert set(first) == {
        "file",
        "verdict",
        "reason",
        "standard",
        "version",
        "message_type",
        "header",
        "findings",
    }
    assert (first["verdict"], first["standard"], first["version"]) == (
        "not_checked",
        "XGewerbeanzeige",
        "2.0",
    )


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _run(tmp_path, str(tmp_path / "missing.xml"))[0] == 2
    assert _run(tmp_path, "--format", "yaml", str(FIX / "xbau-2.6"))[0] == 2
    assert _run(tmp_path, str(tmp_path))[0] == 2  # a folder without XML files
    link = tmp_path / "dangling.xml"
    link.symlink_to(tmp_path / "nowhere")
    code, _, err = _run(tmp_path, str(FIX / "xbau-2.6"), str(link))
    assert code == 2
    assert "dangling.xml" in err


def test_hostile_file_is_reported_not_crashed(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    code, out, _ = _run(tmp_path, str(bomb))
    assert code == 1
    assert "invalid | unknown document | Document type declaration not allowed" in out


def _mixed_folder(tmp_path: Path) -> Path:
    """Valid, invalid and unreadable documents: a folder of 19 with two that cannot be read."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for sample in sorted((FIX / "xgewerbesteuer-1.4").glob("*.xml")):
        (folder / sample.name).write_bytes(sample.read_bytes())
    (folder / "m-broken.xml").write_text("<not-closed", encoding="utf-8")
    (folder / "n-invalid.xml").write_bytes((FIX / "xdomea-3.0.0" / "toolkit_xx_Aussonderung.Aussonderung.0503.xml")
                                           .read_bytes())
    (folder / "o-link.xml").symlink_to(tmp_path / "nowhere.xml")  # dangling: unreadable, named on stderr
    (folder / "p-folder.xml").mkdir()  # a folder named *.xml is walked, not read: nothing in it
    return folder


def test_jobs_spread_over_processes_keep_input_order_and_exit_codes(tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path)
    serial = _run(tmp_path, str(folder), str(tmp_path / "missing.xml"))
    for jobs in ("2", "0"):
        parallel = _run(tmp_path, "--jobs", jobs, str(folder), str(tmp_path / "missing.xml"))
        assert parallel == serial
    code, out, err = serial
    assert code == 2  # unreadable paths: exit 2, yet every readable file was checked
    assert out.count(": valid | XGewerbesteuer 1.4") == 15
    assert "m-broken.xml: invalid" in out and "n-invalid.xml: invalid" in out
    assert "missing.xml" in err and "o-link.xml" in err


def test_jobs_json_output_is_in_input_order(tmp_path: Path) -> None:
    files = sorted(str(p) for p in (FIX / "xgewerbesteuer-1.4").glob("*.xml"))
    code, out, _ = _run(tmp_path, "--format", "json", "--jobs", "2", *reversed(files))
    assert code == 0
    assert [item["file"] for item in json.loads(out)] == list(reversed(files))


def test_negative_jobs_are_a_usage_error(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "--jobs", "-1", str(FIX / "xgewerbesteuer-1.4"))
    assert code == 2 and "--jobs" in err
