from . import qimen_void_wizard
