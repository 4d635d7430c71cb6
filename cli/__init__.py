"""Command-line front ends: one module per `main.py` subcommand (argparse -> core/training calls)."""
