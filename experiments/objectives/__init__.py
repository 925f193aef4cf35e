"""Persona-phase objectives beyond imitation (surface affect, emotion RL) and their comparison.

objectives_extension.py  the extension's hooks: objective cells, trained after each base model
phase.py                 their persona phase as a Stage: on-policy stream, loss, per-cell inputs
grpo.py                  group-relative advantages, the GRPO + KL loss, the packed loss function
affect.py                the content-blind warm-vocabulary loss
rollout.py               sampling simulated-user episodes for a pack of policies
compare.py               the comparison table of every method on one budget
report_section.py        the report's objectives section
"""
