"""The ``injection`` eval family: prompt-injection attacks on tool-using agents in stateful
environments, scored on the final state (benign utility, utility under attack, attack success).
"""
