from . import res_company
from . import pos_config
from . import qimen_sync_job
from . import qimen_callback_log
from . import pos_order
from . import pos_session
from . import stock_picking
from . import res_config_settings
