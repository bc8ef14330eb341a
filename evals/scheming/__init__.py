"""The scheming eval family (after "Frontier Models are Capable of In-context Scheming")."""
