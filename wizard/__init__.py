from . import qimen_void_wizard
from . import qimen_resend_wizard
