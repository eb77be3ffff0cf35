"""The CrewAI checks (crewai_side/) need CrewAI, which this environment cannot hold: they run in
.venv-crewai, started by test_crewai.py, never collected here."""

collect_ignore = ["crewai_side"]
