#!/usr/bin/env python3
"""Example gateway: turn a typed or spoken command into a device action, and act only when
slmd says the utterance *is* a command of the intent.

    docs/examples/gateway.py "unlock the kitchen door"
    echo "tell me a joke" | docs/examples/gateway.py -

It runs `slmctl parse --intent smart_home --json UTTERANCE` and decides on slmctl's exit
status and the JSON it prints:

- exit 0, "matched": true  -> a command. If "needs_confirmation" lists fields (the model was
  unsure of them), or the action is one a wrong guess makes dangerous (lock/unlock/open a
  door), ask the user first; then act on "result". This script's act() only prints what it
  would send; a real gateway calls its device bus there.
- exit 9, "matched": false -> not a command of the intent ("what's the weather like"), or a
  value the intent cannot hold ("set the oven to 180 degrees": "violations" says which field
  and what was asked). Never act; say why and ask the user to rephrase. "result" is null, so
  even code that forgets the check has nothing to act on.
- any other status -> slmd or slmctl failed (not running, busy, bad request): report it.

Exit status of this script: 0 acted, 1 did not act (no match, or not confirmed), 2 error.

Options: --intent NAME (default smart_home), --slmctl PATH (default: slmctl beside this
repository's release build, else on PATH), --yes (confirm everything: for tests and
unattended use). Confirmation is asked on the terminal; without one (stdin is not a tty and
no --yes), anything that needs confirmation is not done.
"""
import argparse, json, os, shutil, subprocess, sys

# Actions a wrong guess would make dangerous: always confirmed by a person.
CONFIRM_ALWAYS = {("door", "unlock"), ("door", "open")}


def slmctl_path(given):
    if given:
        return given
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "..", ".build", "release", "slmctl")
    return built if os.access(built, os.X_OK) else (shutil.which("slmctl") or "slmctl")


def act(command):
    """Where a real gateway sends the command to the device (MQTT, Zigbee, ...)."""
    value = "" if command.get("value") is None else f" {command['value']}"
    print(f"ACT {command['room']}/{command['device']} {command['action']}{value}")


def confirm(question, assume_yes):
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def main():
    ap = argparse.ArgumentParser(description="Act on a spoken or typed command only when slmd matched it.")
    ap.add_argument("utterance", help="the command, or - for stdin")
    ap.add_argument("--intent", default="smart_home")
    ap.add_argument("--slmctl", default=None)
    ap.add_argument("--yes", action="store_true", help="confirm everything that needs confirming")
    a = ap.parse_args()
    utterance = sys.stdin.readline().strip() if a.utterance == "-" else a.utterance

    run = subprocess.run([slmctl_path(a.slmctl), "parse", "--intent", a.intent, "--json", utterance],
                         capture_output=True, text=True)
    if run.returncode not in (0, 9):
        print(f"gateway: slmctl failed (status {run.returncode}): {run.stderr.strip()}", file=sys.stderr)
        return 2
    reply = json.loads(run.stdout)
    if run.returncode == 9 or not reply.get("matched"):
        for v in reply.get("violations", []):
            print(f"NO: {v['field']} cannot be {json.dumps(v['wanted'])} ({v['reason']})")
        if not reply.get("violations"):
            print(f"NO: that is not a {a.intent} command (match score {reply.get('match_score', 0):.2f})")
        return 1
    command = reply["result"]
    unsure = reply.get("needs_confirmation", [])
    risky = (command.get("device"), command.get("action")) in CONFIRM_ALWAYS
    if unsure or risky:
        what = ", ".join(f"{k} = {json.dumps(command[k])}" for k in command)
        reason = f"unsure of {', '.join(unsure)}" if unsure else "this needs a person's yes"
        if not confirm(f"{what}? ({reason})", a.yes):
            print(f"NOT DONE: needs confirmation ({reason})")
            return 1
    act(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
