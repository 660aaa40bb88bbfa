"""``python -m phasewise.sim``: the provider simulator in the foreground (see ``cli``)."""

from phasewise.sim.cli import main

if __name__ == "__main__":
    main()
