from . import qimen_sync_report
