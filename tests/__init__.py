from . import python_ast_race  # first: see its docstring
from . import test_install
from . import test_outbound
from . import test_dispatcher
from . import test_inbound
from . import test_inbound_hostile
from . import test_inbound_concurrency
from . import test_erp_shipped
from . import test_back_office
from . import test_breaker
from . import test_order_sync_page
from . import test_i18n
from . import test_concurrency
from . import test_void_reasons
from . import test_pos_frontend
from . import test_sync_report
from . import test_resend
from . import test_sync_health_dashboard
