"""The value-dilemma family (after DailyDilemmas): loaders, protocol, analysis, family."""
