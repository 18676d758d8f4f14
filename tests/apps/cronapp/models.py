from job_worker import api, models


class Partner(models.Model):
    _inherit = "res.partner"

    @api.periodic("0 3 * * *", tz="Europe/Brussels", channel="reports")
    def nightly_digest(self):
        return "digest"

    @api.periodic(interval=300, no_overlap=True, name="Refresh rates")
    def refresh_rates(self):
        return "rates"
