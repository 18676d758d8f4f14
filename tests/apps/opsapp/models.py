from job_worker import fields, models


class Partner(models.Model):
    _inherit = "res.partner"

    exports = fields.Integer()

    def export(self, fmt="csv"):
        for partner in self:
            partner.exports += 1
        return {"exported": len(self), "format": fmt}

    def explode(self, message="export target refused the file"):
        raise ValueError(message)
