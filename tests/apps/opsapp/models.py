from job_worker import fields, models


class Partner(models.Model):
    _inherit = "res.partner"

    exports = fields.Integer()
    erp_ready = fields.Boolean(help="explode() fails until this is set")

    def export(self, fmt="csv"):
        for partner in self:
            partner.exports += 1
        return {"exported": len(self), "format": fmt}

    def explode(self, message="export target refused the file"):
        if not all(self.mapped("erp_ready")):
            raise ValueError(message)
        return {"pushed": len(self)}
