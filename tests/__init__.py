from . import test_install
from . import test_outbound
from . import test_inbound
from . import test_inbound_hostile
from . import test_inbound_concurrency
from . import test_back_office
from . import test_i18n
