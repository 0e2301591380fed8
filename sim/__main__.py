"""``python -m unimarl.sim NAME [flags]``: run a stand-in game like a Unity player build."""

import sys

from unimarl.sim import main

sys.exit(main(prog="python -m unimarl.sim"))
