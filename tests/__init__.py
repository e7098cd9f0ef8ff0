from . import test_install
from . import test_outbound
from . import test_inbound
from . import test_back_office
from . import test_i18n
from . import test_void_reasons
from . import test_pos_frontend
