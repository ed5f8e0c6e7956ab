"""Alerts: an accountant's rules on the dashboard's figures, and the alerts they raised."""
