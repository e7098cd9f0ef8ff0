-- Neutralized copies of a database never talk to the ERP, and keep none of its secrets:
-- sync off, app and callback secrets cleared for every company.
UPDATE res_company
   SET qimen_enabled = false,
       qimen_app_secret = NULL,
       qimen_callback_secret = NULL;
