"""Persona-phase objectives beyond imitation (surface affect, emotion RL) and their comparison."""
