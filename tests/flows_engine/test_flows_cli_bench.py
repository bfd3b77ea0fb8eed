"""`gateway flows test|draw|check` exit codes and output, and that the micro-benchmark runs."""
import shutil
import textwrap

from gateway.flows.bench import run_decision_bench
from gateway.flows.cli import main
from gateway.infra.assets import shipped_flows_dir

FLOW = """
name: tiny
start: hello
states:
  hello:
    say: "Hello!"
    options:
      - {id: bye, title: "Bye", goto: bye}
  bye:
    say: "Bye!"
    do: [end]
"""


def write(tmp_path, transcript):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "tiny.transcripts.yaml").write_text(textwrap.dedent(transcript))
    return tmp_path


def test_flows_test_passes_and_fails(tmp_path, capsys):
    good = write(tmp_path, """
    - name: says hello and bye
      steps:
        - customer: hi
          bot: ["Hello!"]
        - customer: "1"
          bot: ["Bye!"]
          ended: true
    """)
    assert main(["test", "tiny", "--dir", str(good)]) == 0
    assert "1/1 transcript cases passed" in capsys.readouterr().out
    (tmp_path / "tiny.transcripts.yaml").write_text(textwrap.dedent("""
    - name: wrong expectation
      steps:
        - customer: hi
          bot: ["Good evening"]
    """))
    assert main(["test", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  tiny: wrong expectation" in out and "expected ['Good evening']" in out


def test_flows_test_reports_a_broken_flow(tmp_path, capsys):
    write(tmp_path, "- name: x\n  steps: []\n")
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(FLOW).replace("goto: bye", "goto: nowhere"))
    assert main(["test", "--dir", str(tmp_path)]) == 1
    assert "goto 'nowhere' is not a state" in capsys.readouterr().err


def test_flows_draw_mermaid_and_files(tmp_path, capsys):
    assert main(["draw", "support", "--dir", str(shipped_flows_dir())]) == 0
    out = capsys.readouterr().out
    assert "stateDiagram-v2" in out and "[*] --> menu" in out and "menu --> ask_order" in out
    assert main(["draw", "support", "--dir", str(shipped_flows_dir()), "--out", str(tmp_path / "s.dot")]) == 0
    assert "digraph" in (tmp_path / "s.dot").read_text()
    assert main(["draw", "support", "--dir", str(shipped_flows_dir()), "--engine", "transitions"]) == 0
    assert "stateDiagram-v2" in capsys.readouterr().out
    code = main(["draw", "support", "--dir", str(shipped_flows_dir()), "--out", str(tmp_path / "s.svg")])
    assert code == 0
    if shutil.which("dot"):
        assert (tmp_path / "s.svg").read_text().lstrip().startswith("<")
    else:
        assert "Graphviz 'dot' is not on PATH" in capsys.readouterr().err
        assert (tmp_path / "s.mmd").exists()


def test_flows_check(capsys):
    assert main(["check", "--dir", str(shipped_flows_dir())]) == 0
    assert "ok  support" in capsys.readouterr().out


def test_flows_check_also_checks_the_routing_file_and_the_journeys(tmp_path, capsys):
    flows = tmp_path / "flows"
    shutil.copytree(shipped_flows_dir(), flows)
    assert main(["check", "--dir", str(flows)]) == 0
    out = capsys.readouterr().out
    assert "ok  routing" in out and "ok  journey cart_recovery" in out
    (flows / "routing.yaml").write_text("rules:\n  - team: a\n    when: {colour: red}\n")
    assert main(["check", "--dir", str(flows)]) == 1
    assert "routing.yaml:2: unknown condition colour" in capsys.readouterr().err
    (flows / "routing.yaml").write_text("rules: []\n")
    journey = flows / "journeys" / "cart_recovery.yaml"
    journey.write_text(journey.read_text().replace("steps:", "stepz:", 1))
    assert main(["check", "--dir", str(flows)]) == 1
    assert "cart_recovery.yaml" in capsys.readouterr().err


def test_gateway_cli_registers_flows_subcommand():
    import argparse

    from gateway.flows.cli import add_subparser
    parser = argparse.ArgumentParser()
    add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["flows", "draw", "support", "--out", "x.mmd"])
    assert args.name == "support" and callable(args.func)


def test_bench_runs_and_reports_its_keys():
    result = run_decision_bench(n_turns=200, n_conversations=300)
    for key in ("turn_us_mean", "turn_us_p50", "turn_us_p99", "traced_bytes_after_first", "traced_bytes_after_all",
                "growth_bytes_per_conversation", "machines_before", "machines_after", "one_machine_bytes"):
        assert key in result
    assert result["machines_after"] == result["machines_before"]
    assert result["turn_us_p50"] > 0
