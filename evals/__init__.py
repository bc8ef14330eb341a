"""labelgate's agent-safety eval suite: scenarios, environments, an agent loop, scorers,
statistics, a resumable runner with SQLite results and OpenTelemetry traces, and reports.

Families: ``dilemmas`` (value dilemmas, after DailyDilemmas); ``scheming`` and ``spread`` are
planned. See docs/evals.md.
"""
