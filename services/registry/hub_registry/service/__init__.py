"""What the registry does, as plain functions over one session, one module per thing it owns.

* ``firms``: firms and accountants (sign-in, colleague invitations);
* ``clients``: client cards (add, change, remove, Test Client URL, old cards' tenants);
* ``tenant_grants``: which firms a client's tenant lets read it;
* ``refreshes``: refresh requests, by hand and on the schedule;
* ``accepted_invitations``: a client's invitation accepted (a grant, and the client added);
* ``shared``: who is acting, appending events, the Client URL and finding a live client.

Rules that need neither a session nor a broker live in ``hub_registry.domain``.
"""
