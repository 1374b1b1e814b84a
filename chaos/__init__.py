"""Fault injection on the real local stack, in the spirit of Jepsen: a seeded nemesis, a
steady workload and a checker that reads the outcome of every task (``make chaos``)."""
