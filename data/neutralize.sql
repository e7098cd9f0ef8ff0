-- Neutralized copies of a database never talk to the ERP: sync off for every company.
UPDATE res_company SET qimen_enabled = false;
