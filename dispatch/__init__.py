"""The dispatcher: plain classes over a cursor that send ``qimen.sync.job`` rows.

- :mod:`.queue_sql`: the SQL of the queue (due, claim, done, next retry) and the
  statements a lane prepares once on its connection;
- :mod:`.lanes`: a lane's claim → call → record pipeline, and the threads that run
  lanes on cursors of their own;
- :mod:`.budget`: how long a cron run may take jobs (Odoo's time limits);
- :mod:`.waker`: waking Odoo's cron threads off the committing request;
- :mod:`.watchdog`: when a prefork worker last pinged its watchdog (patched into the
  server from the manifest's ``post_load`` hook).

The model ``qimen.sync.job`` keeps the records: fields, indexes, the write guard, the
retry policy, actions and notices.
"""
